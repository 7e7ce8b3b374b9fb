"""One controller per resource: health, overview, ib, data, quarantine, jobs, training, models."""

from ktrdr_api.controllers.data import DataController
from ktrdr_api.controllers.health import HealthController
from ktrdr_api.controllers.ib import IbController
from ktrdr_api.controllers.jobs import JobsController
from ktrdr_api.controllers.models import ModelsController
from ktrdr_api.controllers.overview import OverviewController
from ktrdr_api.controllers.quarantine import QuarantineController
from ktrdr_api.controllers.training import TrainingController

CONTROLLERS = [
    HealthController,
    OverviewController,
    IbController,
    DataController,
    QuarantineController,
    JobsController,
    TrainingController,
    ModelsController,
]

__all__ = ["CONTROLLERS"]
