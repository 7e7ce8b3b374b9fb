"""``/api/v1/training/runs``: start a training run on a trainer, read its state."""

from __future__ import annotations

from typing import Annotated

import msgspec
from ktrdr_shared import subjects
from ktrdr_shared.client import new_job_id
from ktrdr_shared.errors import InvalidRequest
from ktrdr_shared.messages import StartTraining, StatusRequest, TrainerStatus
from ktrdr_shared.messages.training import default_features
from ktrdr_shared.training_size import check_training_size
from litestar import Controller, Response, get, post
from litestar.openapi.spec import Example
from litestar.params import Body

from ktrdr_api.controllers.jobs import JobIdPath, job_state
from ktrdr_api.deps import EventsDep, GatewayDep, SettingsDep
from ktrdr_api.errors import invalid, not_found, problem_responses
from ktrdr_api.jobs import JobStatus
from ktrdr_api.schemas import JobOut
from ktrdr_api.training_schemas import TrainingRunIn, TrainingRunOut
from ktrdr_api.validation import StrictBody
from ktrdr_api.views import job_links, job_out, utc


def start_training(job_id: str, run: TrainingRunIn) -> StartTraining:
    """Return the wire command for a REST training run."""
    fields = msgspec.to_builtins(run)
    if run.features is None:
        fields["features"] = msgspec.to_builtins(default_features())
    fields.update(
        job_id=job_id,
        symbols=[s.upper() for s in run.symbols],
        start=utc(run.start),
        end=utc(run.end),
    )
    return msgspec.convert(fields, StartTraining, strict=False)


class TrainingController(Controller):
    """Training runs are jobs of kind ``training``, started on a trainer."""

    path = "/api/v1/training/runs"
    tags = ["training"]

    @post(
        status_code=202,
        operation_id="startTrainingRun",
        dto=StrictBody[TrainingRunIn],
        summary="Train a model on stored bars (a job); 503 until a trainer runs",
        responses=problem_responses(400, 401, 502, 503, 504),
    )
    async def start(
        self,
        gateway: GatewayDep,
        settings: SettingsDep,
        data: Annotated[
            TrainingRunIn,
            Body(
                examples=[
                    Example(
                        summary="an MLP on AAPL hourly bars",
                        value={"symbols": ["AAPL"], "timeframe": "1h", "epochs": 10},
                    ),
                    Example(
                        summary="an LSTM with a zigzag label",
                        value={
                            "symbols": ["EURUSD"],
                            "timeframe": "5m",
                            "label": {"kind": "zigzag", "threshold": 0.01},
                            "model": {"kind": "lstm", "seq_len": 32},
                        },
                    ),
                ]
            ),
        ],
    ) -> Response[TrainingRunOut]:
        """Check that a trainer answers, then publish ``StartTraining``."""
        command = start_training(new_job_id(), data)
        try:
            check_training_size(command, settings.api_training_max_bytes)
        except InvalidRequest as e:
            raise invalid(str((e.details or {}).get("field", "model")), "body", e.message) from e
        await gateway.request(subjects.TRAIN_STATUS, StatusRequest(), TrainerStatus)
        job_id = await gateway.send_command(subjects.CMD_TRAIN_START, command)
        links = job_links(job_id)
        return Response(
            TrainingRunOut(job_id=job_id, status=JobStatus.QUEUED, links=links),
            status_code=202,
            headers={"Location": links.self},
        )

    @get(
        "/{job_id:str}",
        operation_id="getTrainingRun",
        summary="A training run's state (epochs, metrics, model id), from its events",
        responses=problem_responses(400, 401, 404, 503, 504),
    )
    async def get_run(self, events: EventsDep, job_id: JobIdPath) -> JobOut:
        """Fold the run's events; 404 when it is not a training job."""
        state, _ = await job_state(events, job_id)
        if state.kind not in (None, "training"):
            raise not_found(
                f"job {job_id} is a {state.kind} job, not a training run; see /api/v1/jobs/{job_id}"
            )
        return job_out(state)
