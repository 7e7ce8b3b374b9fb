"""``ktrdr``: the command-line client of the REST API.

Built on click (already installed with Litestar; nested command groups,
options from environment variables and clean usage errors with exit code 2
come with it; argparse would need all three written by hand). Every command
takes ``--json`` for scripts; the base URL and key come from ``--url`` /
``--api-key`` or ``KTRDR_API_URL`` / ``KTRDR_API_KEY``. Exit codes:
``ExitCode`` in ``api_client`` (and the README).
"""

from __future__ import annotations

import sys

from ktrdr_api.cli import training  # noqa: F401 - registers train and models
from ktrdr_api.cli.api_client import CliError, ExitCode
from ktrdr_api.cli.commands import cli
from ktrdr_api.cli.render import err, print_json


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit with the code that says how it ended."""
    try:
        code = cli.main(args=argv, prog_name="ktrdr", standalone_mode=False)
    except CliError as e:
        if e.problem is not None and "--json" in (argv if argv is not None else sys.argv):
            print_json(e.problem)
        err.print(f"ktrdr: {e.message}", markup=False)
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        err.print("ktrdr: interrupted")
        raise SystemExit(ExitCode.INTERRUPTED) from None
    except Exception as e:  # click's usage errors and aborts
        import click

        if isinstance(e, click.ClickException):
            e.show()
            raise SystemExit(e.exit_code) from None
        if isinstance(e, click.exceptions.Abort):
            raise SystemExit(ExitCode.INTERRUPTED) from None
        raise
    raise SystemExit(code if isinstance(code, int) else ExitCode.OK)


__all__ = ["ExitCode", "main"]
