"""Where Litestar's generated OpenAPI needs a hand to say what the routes really do.

* Bars answer JSON, CSV or an Arrow IPC stream; the job and overview event streams
  are ``text/event-stream``; a model download is a zip or raw bytes: the success
  responses list those media types.
* The cancel body is optional.
* Request bodies refuse unknown fields (``additionalProperties: false``), and
  list items keep their constraints (a symbol inside ``symbols``), so that a
  request the schema allows is one the gateway accepts.
* Every response body schema shows an example (``examples``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

import msgspec
from ktrdr_shared.messages import JobEvent, event_type
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
)

from ktrdr_api import overview_schemas, schemas, training_schemas  # noqa: F401 - registers them
from ktrdr_api.examples import example_of

CSV = "text/csv"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
EVENT_STREAM = "text/event-stream"
ZIP = "application/zip"
OCTETS = "application/octet-stream"

_BINARY = Schema(type=OpenAPIType.STRING, format="binary")  # type: ignore[arg-type]


# Every job event the stream can carry, from the wire's own union (it never drifts).
JOB_EVENT_TYPES = [event_type(t) for t in get_args(JobEvent)]

# OpenAPI 3.1 describes an event stream by the schema of one event.
SSE_EVENT = Schema(
    type=OpenAPIType.OBJECT,
    required=["data"],
    description="One server-sent event of the job (the stream ends after the terminal one).",
    properties={
        "id": Schema(
            type=OpenAPIType.STRING,
            pattern=r"^[0-9]+$",
            description="The event's sequence in the log (send it back as "
            "Last-Event-ID to resume after it).",
        ),
        "event": Schema(
            type=OpenAPIType.STRING,
            enum=JOB_EVENT_TYPES,
            description="The event's type (its tag).",
        ),
        "data": Schema(
            type=OpenAPIType.STRING,
            content_media_type="application/json",
            description="The event as JSON, tagged by 'type'.",
        ),
    },
)


# The overview's live feed: one event type, whose data is an OverviewOut.
OVERVIEW_EVENT = Schema(
    type=OpenAPIType.OBJECT,
    required=["event", "data"],
    description="One snapshot of the overview (a keep-alive comment between them when "
    "nothing is sent for a while; the stream does not end).",
    properties={
        "event": Schema(type=OpenAPIType.STRING, enum=["overview"]),
        "data": Schema(
            type=OpenAPIType.STRING,
            content_media_type="application/json",
            content_schema=Reference("#/components/schemas/OverviewOut"),
            description="The snapshot as JSON (the body of GET /api/v1/overview).",
        ),
    },
)


def _success(operation: Operation) -> Any:
    return (operation.responses or {}).get("200")


@dataclass
class BarsOperation(Operation):
    """A bar page: JSON (the schema), CSV or an Arrow IPC stream."""

    def __post_init__(self) -> None:
        ok = _success(self)
        if ok is not None and ok.content is not None:
            ok.content[CSV] = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
            ok.content[ARROW_STREAM] = OpenAPIMediaType(schema=_BINARY)


@dataclass
class EventsOperation(Operation):
    """A job's server-sent events."""

    def __post_init__(self) -> None:
        ok = _success(self)
        if ok is not None:
            ok.content = {EVENT_STREAM: OpenAPIMediaType(schema=SSE_EVENT)}


@dataclass
class OverviewEventsOperation(Operation):
    """The overview's server-sent events."""

    def __post_init__(self) -> None:
        ok = _success(self)
        if ok is not None:
            ok.content = {EVENT_STREAM: OpenAPIMediaType(schema=OVERVIEW_EVENT)}


@dataclass
class DownloadOperation(Operation):
    """A model's artifact: a zip of its objects, or one object's bytes."""

    def __post_init__(self) -> None:
        ok = _success(self)
        if ok is not None:
            ok.content = {
                ZIP: OpenAPIMediaType(schema=_BINARY),
                OCTETS: OpenAPIMediaType(schema=_BINARY),
            }


@dataclass
class OptionalBodyOperation(Operation):
    """A route whose JSON body may be left out."""

    def __post_init__(self) -> None:
        if self.request_body is not None and not isinstance(self.request_body, dict):
            self.request_body.required = False  # type: ignore[union-attr]


def tighten(document: OpenAPI) -> OpenAPI:
    """Close request body schemas, restore list items' constraints, add response examples."""
    components = document.components.schemas if document.components else None
    if not components:
        return document
    for name, schema in components.items():
        example = example_of(name)
        if example is not None:
            schema.examples = [example]
        struct = _REQUEST_AND_RESPONSE_STRUCTS.get(name)
        if struct is None:
            continue
        if struct.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        _restore_item_constraints(struct, schema)
    return document


def _all_subclasses(cls: type[Any]) -> list[type[Any]]:
    found: list[type[Any]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found


# Every body the API declares: its own ``schemas.Struct``s and the REST forms of wire structs
# (``training_schemas``: subclasses of ktrdr_shared messages).
_REQUEST_AND_RESPONSE_STRUCTS: dict[str, type[msgspec.Struct]] = {
    cls.__name__: cls
    for cls in _all_subclasses(msgspec.Struct)
    if cls.__module__.startswith("ktrdr_api.")
}


def _restore_item_constraints(struct: type[msgspec.Struct], schema: Schema) -> None:
    """Copy msgspec's own item constraints (lost by Litestar) onto list-of-string fields."""
    (_, own) = msgspec.json.schema_components([struct])
    fields = own.get(struct.__name__, {}).get("properties", {})
    for field, spec in fields.items():
        items = spec.get("items") if spec.get("type") == "array" else None
        target = (schema.properties or {}).get(field)
        if not items or items.get("type") != "string" or not isinstance(target, Schema):
            continue
        if isinstance(target.items, Schema):
            target.items.min_length = items.get("minLength")
            target.items.max_length = items.get("maxLength")
            target.items.pattern = items.get("pattern")
