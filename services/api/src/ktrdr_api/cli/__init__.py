"""``ktrdr``: the command-line client of the REST API.

Built on click (already installed with Litestar; nested command groups,
options from environment variables and clean usage errors with exit code 2
come with it; argparse would need all three written by hand). ``--json`` (for
scripts) is taken anywhere on the command line; the base URL and key come from
``--url`` / ``--api-key`` or ``KTRDR_API_URL`` / ``KTRDR_API_KEY``. Exit codes:
``ExitCode`` in ``api_client``; the output rules every command follows: the
README's "CLI output rules".
"""

from __future__ import annotations

import sys

from ktrdr_api.cli import data, render, training  # noqa: F401 - data, train, models register
from ktrdr_api.cli.api_client import CliError, ExitCode
from ktrdr_api.cli.commands import cli


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit with the code that says how it ended."""
    try:
        code = cli.main(args=argv, prog_name="ktrdr", standalone_mode=False)
    except CliError as e:
        as_json = "--json" in (argv if argv is not None else sys.argv)
        raise SystemExit(report_error(e, as_json=as_json)) from None
    except KeyboardInterrupt:
        render.err.print("ktrdr: interrupted")
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


def report_error(error: CliError, *, as_json: bool) -> int:
    """Print a failure in one line, then the API's hint if it gave one; return its exit code.

    With ``--json`` the problem body goes to stdout as well, for scripts.
    """
    if error.problem is not None and as_json:
        render.print_json(error.problem)
    render.err.print(f"ktrdr: {error.message}", markup=False)
    if error.problem is not None and error.problem.get("hint"):
        render.err.print(f"hint: {error.problem['hint']}", markup=False)
    return error.exit_code


__all__ = ["ExitCode", "main", "report_error"]
