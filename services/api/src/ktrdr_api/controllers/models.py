"""``/api/v1/models``: stored models (metadata from the trainer, artifacts from object store)."""

from __future__ import annotations

from typing import Annotated

import nats.errors
import nats.js.errors
from ktrdr_shared import streams, subjects
from ktrdr_shared.messages import ModelInfo, ModelList, StatusRequest
from litestar import Controller, Response, get
from litestar.openapi.spec import Example, Operation, Schema
from litestar.openapi.spec import OpenAPIMediaType as OpenApiMediaType
from litestar.params import Parameter

from ktrdr_api.deps import GatewayDep
from ktrdr_api.errors import ApiError, not_found, problem_responses
from ktrdr_api.gateway import Gateway
from ktrdr_api.schemas import ModelOut, ModelsOut
from ktrdr_api.views import model_out

OCTETS = "application/octet-stream"

ModelIdPath = Annotated[str, Parameter(
    description="The model's id.", pattern=r"^[0-9A-Za-z_-]{1,64}$", min_length=1, max_length=64,
    examples=[Example(value="m-0123456789ab")])]  # fmt: skip


class DownloadOperation(Operation):
    """The download's OpenAPI operation: the artifact's bytes."""

    def __post_init__(self) -> None:
        ok = self.responses.get("200") if self.responses else None
        if ok is not None and hasattr(ok, "content"):
            ok.content = {OCTETS: OpenApiMediaType(schema=Schema(
                type="string", format="binary"))}  # type: ignore[arg-type]  # fmt: skip


async def find_model(gateway: Gateway, model_id: str) -> ModelInfo:
    """Return a model's metadata from the trainer.

    Raises:
        ApiError: 404 for an unknown model; 503 when no trainer runs.
    """
    found = await gateway.request(subjects.TRAIN_MODELS, StatusRequest(), ModelList)
    for model in found.models:
        if model.model_id == model_id:
            return model
    raise not_found(f"no model {model_id}; GET /api/v1/models lists the stored ones")


class ModelsController(Controller):
    """Trained models, as the trainer lists them."""

    path = "/api/v1/models"
    tags = ["models"]

    @get(operation_id="listModels", summary="Every stored model; 503 until a trainer runs",
         responses=problem_responses(401, 502, 503, 504))  # fmt: skip
    async def list_models(self, gateway: GatewayDep) -> ModelsOut:
        """Ask the trainer for its models."""
        found = await gateway.request(subjects.TRAIN_MODELS, StatusRequest(), ModelList)
        return ModelsOut(models=[model_out(m) for m in found.models])

    @get("/{model_id:str}", operation_id="getModel", summary="A stored model's metadata",
         responses=problem_responses(400, 401, 404, 502, 503, 504))  # fmt: skip
    async def get_model(self, gateway: GatewayDep, model_id: ModelIdPath) -> ModelOut:
        """Find the model in the trainer's list."""
        return model_out(await find_model(gateway, model_id))

    @get("/{model_id:str}/download", operation_id="downloadModel",
         summary="A stored model's artifact (weights, feature and normalisation config)",
         operation_class=DownloadOperation,
         responses=problem_responses(400, 401, 404, 502, 503, 504))  # fmt: skip
    async def download(self, gateway: GatewayDep, model_id: ModelIdPath) -> Response[bytes]:
        """Read the artifact named ``model_id`` from the ``ktrdr_models`` object store."""
        await find_model(gateway, model_id)
        try:
            store = await gateway.js.object_store(streams.MODELS_BUCKET)
            result = await store.get(model_id)
        except (nats.js.errors.ObjectNotFoundError, nats.js.errors.NotFoundError,
                nats.js.errors.BucketNotFoundError) as e:  # fmt: skip
            raise not_found(f"model {model_id} is listed but its artifact is not in the "
                            f"object store {streams.MODELS_BUCKET}") from e  # fmt: skip
        except nats.errors.TimeoutError as e:
            raise ApiError(504, "nats_timeout", "the object store did not answer in time; "
                           "try again") from e  # fmt: skip
        data = result.data or b""
        return Response(data, media_type=OCTETS, headers={
            "Content-Disposition": f'attachment; filename="{model_id}.pt"'})  # fmt: skip
