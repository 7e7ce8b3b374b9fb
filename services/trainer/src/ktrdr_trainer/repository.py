"""The ``ktrdr_models`` object store: put an artifact's objects, list and read models back."""

from __future__ import annotations

import asyncio

import msgspec
from ktrdr_shared.errors import NotFound
from ktrdr_shared.messages import ModelInfo
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from ktrdr_trainer.artifacts import (
    INFO,
    MANIFEST,
    WEIGHTS,
    Artifact,
    ModelManifest,
    decode_manifest,
    object_name,
)


class ModelRepository:
    """Models in a NATS object store, four objects each (see ``artifacts``)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def save(self, artifact: Artifact) -> int:
        """Store every object of an artifact (``info.json`` last, so a listed model is whole).

        Returns:
            the artifact's total size in bytes.
        """
        objects = artifact.objects()
        info = object_name(artifact.model_id, INFO)
        for name, data in objects.items():
            if name != info:
                await self.store.put(name, data)
        await self.store.put(info, objects[info])
        return sum(len(data) for data in objects.values())

    async def manifest(self, model_id: str) -> ModelManifest:
        """Return a model's manifest.

        Raises:
            NotFound: no such model.
        """
        return decode_manifest(await self._get(model_id, MANIFEST))

    async def weights(self, model_id: str) -> bytes:
        """Return a model's ``weights.pt`` bytes."""
        return await self._get(model_id, WEIGHTS)

    async def get(self, model_id: str, part: str) -> bytes:
        """Return one object of a model (``report.png``, ...)."""
        return await self._get(model_id, part)

    async def list(self) -> list[ModelInfo]:
        """Return every stored model, newest first, with its total size."""
        try:
            objects = await self.store.list(ignore_deletes=True)
        except NotFoundError:  # an empty store answers "not found"
            return []
        sizes: dict[str, int] = {}
        for obj in objects:
            model_id = (obj.name or "").rpartition("/")[0]
            sizes[model_id] = sizes.get(model_id, 0) + int(obj.size or 0)
        listed = [o.name for o in objects if o.name and o.name.endswith(f"/{INFO}")]
        infos = await asyncio.gather(*(self.store.get(name) for name in listed))
        models = [msgspec.json.decode(r.data, type=ModelInfo) for r in infos if r.data]
        models = [msgspec.structs.replace(m, size_bytes=sizes.get(m.model_id, 0)) for m in models]
        return sorted(models, key=lambda m: m.created, reverse=True)

    async def _get(self, model_id: str, part: str) -> bytes:
        try:
            result = await self.store.get(object_name(model_id, part))
        except (ObjectNotFoundError, NotFoundError) as e:
            raise NotFound(
                f"no model {model_id!r} (no {part} in the model store); "
                "ktrdr.train.models lists the stored ones",
                details={"model_id": model_id},
            ) from e
        return bytes(result.data or b"")
