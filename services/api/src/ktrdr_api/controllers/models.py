"""``/api/v1/models``: stored models (metadata from the trainer, artifacts from object store)."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Annotated

import nats.errors
import nats.js.errors
from ktrdr_shared import streams, subjects
from ktrdr_shared.messages import ModelInfo, ModelList, StatusRequest
from litestar import Controller, Response, get
from litestar.openapi.spec import Example
from litestar.params import Parameter

from ktrdr_api.deps import GatewayDep
from ktrdr_api.errors import ApiError, not_found, problem_responses
from ktrdr_api.gateway import Gateway
from ktrdr_api.openapi import OCTETS, ZIP, DownloadOperation
from ktrdr_api.training_schemas import ModelOut, ModelsOut
from ktrdr_api.views import model_out

ModelIdPath = Annotated[
    str,
    Parameter(
        description="The model's id.",
        pattern=r"^[0-9A-Za-z_-]{1,64}$(?!\n)",
        min_length=1,
        max_length=64,
        examples=[Example(value="m-0123456789ab")],
    ),
]


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

    @get(
        operation_id="listModels",
        summary="Every stored model; 503 until a trainer runs",
        responses=problem_responses(401, 502, 503, 504),
    )
    async def list_models(self, gateway: GatewayDep) -> ModelsOut:
        """Ask the trainer for its models."""
        found = await gateway.request(subjects.TRAIN_MODELS, StatusRequest(), ModelList)
        return ModelsOut(models=[model_out(m) for m in found.models])

    @get(
        "/{model_id:str}",
        operation_id="getModel",
        summary="A stored model's metadata",
        responses=problem_responses(400, 401, 404, 502, 503, 504),
    )
    async def get_model(self, gateway: GatewayDep, model_id: ModelIdPath) -> ModelOut:
        """Find the model in the trainer's list."""
        return model_out(await find_model(gateway, model_id))

    @get(
        "/{model_id:str}/download",
        operation_id="downloadModel",
        summary="A stored model's artifact: every object as a zip, or one part",
        description="Without ``part``: a zip of every object the trainer stored for the model "
        "(``info.json``, ``manifest.json`` with the feature and normalisation config and "
        "metrics, ``weights.pt``, ``report.png``). With ``part``: that object alone.",
        operation_class=DownloadOperation,
        responses=problem_responses(400, 401, 404, 502, 503, 504),
    )
    async def download(
        self,
        gateway: GatewayDep,
        model_id: ModelIdPath,
        part: Annotated[
            str | None,
            Parameter(
                description="One object of the model, e.g. weights.pt or manifest.json.",
                pattern=r"^[0-9A-Za-z_.-]{1,64}$(?!\n)",
            ),
        ] = None,
    ) -> Response[bytes]:
        """Read the model's objects (``<model_id>/<part>``) from the ``ktrdr_models`` store."""
        await find_model(gateway, model_id)
        objects = await _model_objects(gateway, model_id, part)
        if part is not None:
            return Response(
                objects[part],
                media_type=OCTETS,
                headers={"Content-Disposition": f'attachment; filename="{model_id}-{part}"'},
            )
        archive = io.BytesIO()
        written: set[str] = set()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in sorted(objects.items()):
                entry = archive_entry(model_id, name)
                if entry is not None and entry not in written:
                    written.add(entry)
                    z.writestr(entry, data)
        return Response(
            archive.getvalue(),
            media_type=ZIP,
            headers={"Content-Disposition": f'attachment; filename="{model_id}.zip"'},
        )


def archive_entry(model_id: str, name: str) -> str | None:
    """Return the zip entry of object ``name`` of a model: ``<model_id>/<safe path>``.

    Object names are stored as their writer chose them, so one may hold ``..``,
    a leading ``/``, a backslash or a drive letter; extracting such an entry would
    write outside the folder. Those parts are dropped (None when nothing is left).
    """
    parts = [p for p in re.split(r"[/\\]", name) if p not in ("", ".", "..")]
    parts = [p for p in parts if ":" not in p and p.isprintable()]
    return f"{model_id}/{'/'.join(parts)}" if parts else None


async def _model_objects(gateway: Gateway, model_id: str, part: str | None) -> dict[str, bytes]:
    """Return ``{part: bytes}`` of a model's objects (only ``part`` when given)."""
    prefix = f"{model_id}/"
    try:
        store = await gateway.js.object_store(streams.MODELS_BUCKET)
        if part is None:
            listed = await store.list(ignore_deletes=True)
            names = [o.name for o in listed if o.name and o.name.startswith(prefix)]
        else:
            names = [prefix + part]
        found = {
            name.removeprefix(prefix): bytes((await store.get(name)).data or b"") for name in names
        }
    except (
        nats.js.errors.ObjectNotFoundError,
        nats.js.errors.NotFoundError,
        nats.js.errors.BucketNotFoundError,
    ) as e:
        what = f"object {part!r} of model {model_id}" if part else f"model {model_id}'s objects"
        raise not_found(f"no {what} in the object store {streams.MODELS_BUCKET}") from e
    except nats.errors.TimeoutError as e:
        raise ApiError(
            504, "nats_timeout", "the object store did not answer in time; try again"
        ) from e
    if not found:
        raise not_found(f"model {model_id} is listed but has no objects in {streams.MODELS_BUCKET}")
    return found
