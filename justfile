# Every task a person runs in ktrdr. `just` with no arguments lists them.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"
# The set of files whose change means the virtual environment must be rebuilt.
setup_inputs := "requirements-dev.txt shared/pyproject.toml services/ib-connector/pyproject.toml services/data-store/pyproject.toml services/trainer/pyproject.toml services/api/pyproject.toml infra/ib-gateway-sim/pyproject.toml"

# List the recipes.
default:
    @just --list

# Create .venv and install the five packages and the simulator (editable, with their test extras), dev and research tools.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    [ -x {{py}} ] || python3 -m venv {{venv}}
    # torch first and pinned: 2.13.0 resolves to the local CPU wheel; an
    # unpinned torch would pull several GB of CUDA packages onto a CPU box.
    {{py}} -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
    # Each package's `testing` extra installs what its fixtures and tests import.
    {{py}} -m pip install --quiet --disable-pip-version-check \
        -e 'shared[testing]' -e 'services/ib-connector[testing]' -e 'services/data-store[testing]' \
        -e 'services/trainer[testing]' -e 'services/api[testing]' -e 'infra/ib-gateway-sim[testing]' \
        -r requirements-dev.txt
    cat {{setup_inputs}} | sha256sum > {{venv}}/.ktrdr-setup
    echo "ktrdr: environment ready in {{venv}}"

# Run `setup` when .venv is missing or a pyproject changed since it was built.
_ensure-venv:
    #!/usr/bin/env bash
    set -euo pipefail
    want=$(cat {{setup_inputs}} | sha256sum)
    if [ ! -x {{py}} ] || [ "$(cat {{venv}}/.ktrdr-setup 2>/dev/null)" != "$want" ]; then
        {{just_executable()}} setup
    fi

# The suite runs on 4 pytest-xdist workers: most server tests wait on IO, so more workers
# than cores pay. `--dist loadgroup` keeps the tests of one `xdist_group` on one worker.

# The web console's browser tests run their own whole stacks and browsers: without ARGS they
# are a second phase, so their load never meets the suite's timing-sensitive pacing tests
# (together, on 2 cores, those flaked). With ARGS, one pytest run of exactly what is asked.

# Run the full default test suite (unit, integration, e2e, slow) on 4 workers. Extra args go to pytest.
test *ARGS: _ensure-venv
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -n "{{ARGS}}" ]; then exec {{py}} -m pytest -n 4 --dist loadgroup {{ARGS}}; fi
    {{py}} -m pytest -n 4 --dist loadgroup --ignore=services/api/tests/console
    {{py}} -m pytest -n 2 --dist loadgroup services/api/tests/console

# Run only the fast, process-free tests (marker `unit`). Extra args go to pytest.
test-unit *ARGS: _ensure-venv
    {{py}} -m pytest -m unit {{ARGS}}

# Lint: ruff on everything, mypy (strict) on every package's source; CI runs it first.
lint: _ensure-venv
    {{venv}}/bin/ruff check .
    {{venv}}/bin/ruff format --check .
    {{venv}}/bin/mypy --strict shared/src services/ib-connector/src services/data-store/src services/trainer/src services/api/src infra/ib-gateway-sim/src

# Format the code in place.
fmt: _ensure-venv
    {{venv}}/bin/ruff format .
    {{venv}}/bin/ruff check --fix .

# Run a single-node JetStream nats-server on 127.0.0.1:4222 (data under ./data/nats).
nats: _ensure-venv
    mkdir -p data/nats
    {{venv}}/bin/nats-server -c infra/nats/nats.conf -sd data/nats

# Run the IB Gateway simulator on 127.0.0.1:4002 (control port 4003). Extra args go to it.
sim *ARGS: _ensure-venv
    {{venv}}/bin/ktrdr-ib-sim --port 4002 --control-port 4003 {{ARGS}}

# Run the ib-connector against KTRDR_IB_HOST/PORT (default: the simulator on 4002).
connector: _ensure-venv
    {{py}} -m ktrdr_ib_connector

# `just up` starts a background supervisor (the launcher ktrdr_shared.stack, as `just demo`
# and the tests use it): nats-server, the IB Gateway simulator (unless KTRDR_IB_HOST names a
# real gateway) and the four services, then waits until each answers $SRV.PING.
# Logs: data/logs/<process>.log. See docs/deploy.md.
#
# `just --list` shows only the one comment line right above a recipe: keep each such line a
# whole sentence, and put longer explanations in a block like this one, a blank line above.

# Start the stack in the background (`just up --secure`: one NATS user per service).
up *FLAGS: _ensure-venv
    {{py}} infra/scripts/stack.py up {{FLAGS}}

# `declare` must run as the NATS admin where the server has users; `just up --secure` runs it
# so, before the services start.

# Declare the JetStream streams, consumers and buckets (`--check`: only report drift).
declare *FLAGS: _ensure-venv
    {{py}} -m ktrdr_shared.declare {{FLAGS}}

# Stop the stack of `just up` (whatever KTRDR_DATA_DIR it had): services first, then NATS.
down:
    {{py}} infra/scripts/stack.py down

# Show each process of the running `just up` stack.
status:
    {{py}} infra/scripts/stack.py status

# Run the `ktrdr` CLI from .venv against the API (`just ktrdr status`); arguments pass through.
[positional-arguments]
ktrdr *ARGS: _ensure-venv
    @{{venv}}/bin/ktrdr "$@"

# The demo: set up, start the system on free loopback ports under data/demo, load a stock, a
# forex pair and a future through the REST API, train a model, print a summary, stop it all.

# Start the system under data/demo, load three instruments, train a model, summarise, stop it (`--keep`: stay up until Ctrl-C).
demo *FLAGS: _ensure-venv
    {{py}} infra/scripts/demo.py {{FLAGS}}

# Run every benchmark and print machine-readable results.
bench *ARGS: _ensure-venv
    {{py}} bench/run.py {{ARGS}}

# The console's vendored npm files (console/vendor.json): `--check` proves they are the published bytes; without it, rewrites them.
vendor-console *FLAGS: _ensure-venv
    {{py}} infra/scripts/vendor_console.py {{FLAGS}}
