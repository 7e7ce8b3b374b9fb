"""Run the api: ``python -m ktrdr_api``."""

from ktrdr_api.serve import main

if __name__ == "__main__":
    main()
