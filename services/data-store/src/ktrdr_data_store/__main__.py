"""Run the data-store: ``python -m ktrdr_data_store``."""

from ktrdr_data_store.app import main

if __name__ == "__main__":
    main()
