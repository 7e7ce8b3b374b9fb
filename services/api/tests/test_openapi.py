"""The OpenAPI document: every route has an operation id, examples, and documented errors."""

from __future__ import annotations

from typing import Any

import pytest
from ktrdr_api.app import create_app
from ktrdr_api.config import ApiSettings
from ktrdr_api.examples import EXAMPLES

pytestmark = pytest.mark.unit

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return dict(create_app(ApiSettings()).openapi_schema.to_schema())


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op and not path.startswith("/schema")
    ]


def test_it_is_openapi_3_1_with_every_route(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    assert len(operations(document)) == 24
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(set(ids)) == len(ids)
    assert all(i[0].islower() and "_" not in i for i in ids)  # camelCase, chosen by hand


def test_every_route_documents_its_errors_as_problem_details(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
        if path == "/health":
            assert list(errors) == ["503"]  # the report itself, with status down
            continue
        if path.startswith("/api/v1/overview"):
            assert list(errors) == ["401"]  # what is down is said inside the snapshot
            continue
        assert {"401", "503", "504"} <= set(errors), (method, path)
        for code, response in errors.items():
            media = response["content"][PROBLEM]
            assert media["schema"] == {"$ref": "#/components/schemas/Problem"}, (path, code)
            assert media["examples"], (method, path, code)


def test_every_route_has_examples(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for method, path, op in operations(document):
        ok = next(r for code, r in op["responses"].items() if code[0] == "2")
        refs = [
            m["schema"]["$ref"].rsplit("/", 1)[-1]
            for m in ok.get("content", {}).values()
            if "$ref" in m.get("schema", {})
        ]
        for ref in refs:
            assert schemas[ref].get("examples"), (method, path, ref)
        if "requestBody" in op:
            [body] = op["requestBody"]["content"].values()
            assert body.get("examples") or body["schema"].get("examples"), (method, path)
    assert set(EXAMPLES) <= set(schemas)  # no example for a schema that does not exist


def test_request_bodies_refuse_unknown_fields(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("LoadIn", "ValidateSymbolIn", "TrainingRunIn", "CancelIn", "MlpModelIn"):
        assert schemas[name]["additionalProperties"] is False, name
    symbols = schemas["TrainingRunIn"]["properties"]["symbols"]["items"]
    assert symbols["minLength"] == 1 and symbols["pattern"]


def test_the_event_stream_names_every_job_event_type(document: dict[str, Any]) -> None:
    stream = document["paths"]["/api/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]
    names = stream["content"]["text/event-stream"]["schema"]["properties"]["event"]["enum"]
    assert {"segments_dispatched", "segment_progress", "progress", "cancelled"} <= set(names)


def test_the_overview_stream_sends_snapshots_of_the_overview(document: dict[str, Any]) -> None:
    snapshot = document["paths"]["/api/v1/overview"]["get"]["responses"]["200"]
    assert snapshot["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OverviewOut"
    }
    stream = document["paths"]["/api/v1/overview/events"]["get"]["responses"]["200"]
    event = stream["content"]["text/event-stream"]["schema"]["properties"]
    assert event["event"]["enum"] == ["overview"]
    assert event["data"]["contentSchema"] == {"$ref": "#/components/schemas/OverviewOut"}
    pacing = document["components"]["schemas"]["PacingOut"]["properties"]
    assert {"requests_in_window", "window_max", "window_s", "next_free_s"} <= set(pacing)


def test_bars_and_coverage_document_the_damaged_dataset(document: dict[str, Any]) -> None:
    for path in ("/api/v1/data/{symbol}/{timeframe}", "/api/v1/data/{symbol}/{timeframe}/coverage"):
        conflict = document["paths"][path]["get"]["responses"]["409"]
        [example] = conflict["content"]["application/problem+json"]["examples"].values()
        assert example["value"]["code"] == "dataset_damaged"
        assert "ktrdr data repair AAPL 1h" in example["value"]["detail"]
    repair = document["paths"]["/api/v1/data/{symbol}/{timeframe}/repair"]["post"]
    assert repair["operationId"] == "repairDataset" and "202" in repair["responses"]
    release = document["paths"]["/api/v1/quarantine/{quarantine_id}/release"]["post"]
    assert release["operationId"] == "releaseQuarantined" and "404" in release["responses"]


def test_the_consoles_coverage_days_dataset_details_and_quarantine_filter_are_documented(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    coverage = document["paths"]["/api/v1/data/{symbol}/{timeframe}/coverage"]["get"]
    days = next(p for p in coverage["parameters"] if p["name"] == "days")
    assert days["in"] == "query" and days["schema"]["type"] == "boolean"
    assert "``partial``" in coverage["description"] and "20 years" in coverage["description"]
    assert schemas["DayState"]["enum"] == ["stored", "partial", "gap", "empty", "closed", "none"]
    assert schemas["CoverageDayOut"]["required"] == ["date", "state"]
    assert "days" in schemas["CoverageOut"]["properties"]
    assert {"bytes", "use_rth", "quarantined"} <= set(schemas["DatasetOut"]["properties"])
    assert {"symbol", "timeframe", "start", "end"} <= set(schemas["QuarantinedOut"]["properties"])
    listing = document["paths"]["/api/v1/quarantine"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"symbol", "timeframe"}
    assert "400" in listing["responses"]
