"""Run the CLI: ``python -m ktrdr_api.cli`` (the same as ``ktrdr``)."""

from ktrdr_api.cli import main

if __name__ == "__main__":
    main()
