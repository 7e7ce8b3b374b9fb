"""Run the ib-connector: ``python -m ktrdr_ib_connector``."""

from ktrdr_ib_connector.app import main

if __name__ == "__main__":
    main()
