"""Run the trainer: ``python -m ktrdr_trainer``."""

from ktrdr_trainer.app import main

if __name__ == "__main__":
    main()
