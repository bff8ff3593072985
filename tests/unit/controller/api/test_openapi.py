"""The OpenAPI description: public, and in step with the route table both ways."""

from __future__ import annotations

from typing import Any

import schemathesis

from controller.api.openapi import APIOpenAPI, openapi_path, served
from tests.unit.controller.apps import Api


def _openapi(api: Api) -> APIOpenAPI:
    """The app's own description resource (the handler of /api/openapi.json)."""
    for route in api.client.app.router.routes():
        if route.resource is not None and route.resource.canonical == "/api/openapi.json":
            return route.handler.__self__  # type: ignore[union-attr]
    raise AssertionError("no /api/openapi.json route")


async def _document(api: Api) -> dict[str, Any]:
    status, body, _ = await api.call("GET", "/api/openapi.json", token=None)
    assert status == 200, body
    return body


async def test_every_route_has_an_operation_and_every_operation_a_route(api: Api) -> None:
    routes = served(api.client.app.router.routes())
    declared = set(_openapi(api).operations)
    assert routes - declared == set(), "routes without an operation in their API class"
    assert declared - routes == set(), "operations without a route"


async def test_the_description_is_public_and_names_every_route(api: Api) -> None:
    doc = await _document(api)
    assert doc["openapi"].startswith("3.1")
    for method, path in served(api.client.app.router.routes()):
        item = doc["paths"][openapi_path(path)]
        verbs = ["get", "post", "put", "patch", "delete"] if method == "*" else [method.lower()]
        for verb in verbs:
            assert "responses" in item[verb], (method, path)


async def test_every_error_answer_refers_to_a_described_error(api: Api) -> None:
    doc = await _document(api)
    responses = doc["components"]["responses"]
    for item in doc["paths"].values():
        for verb, operation in item.items():
            if verb == "parameters":
                continue
            for code, answer in operation["responses"].items():
                if not code.isdigit() or int(code) < 400:
                    continue
                if "$ref" in answer:
                    assert answer["$ref"].rsplit("/", 1)[1] in responses, (verb, code)
                elif operation["tags"] == ["dashboard"]:  # its pages: errors as HTML pages
                    assert "text/html" in answer["content"], (verb, code)
                else:  # the bot proxy: the controller's error or the bot's own answer
                    assert operation["tags"] == ["bot proxy"], (verb, code)
                    assert "*/*" in answer["content"], (verb, code)
            # Authenticated operations say they can answer 401.
            if operation["security"]:
                assert "401" in operation["responses"]


async def test_operation_ids_are_unique(api: Api) -> None:
    doc = await _document(api)
    ids = [
        o["operationId"] for i in doc["paths"].values() for v, o in i.items() if v != "parameters"
    ]
    assert len(ids) == len(set(ids))


async def test_every_placeholder_is_a_declared_path_parameter(api: Api) -> None:
    doc = await _document(api)
    for path, item in doc["paths"].items():
        names = {p["name"] for p in item.get("parameters", ())}
        assert names == set(path.replace("}", "{").split("{")[1::2]), path


async def test_the_description_holds_no_secret(api: Api) -> None:
    _, _, text = await api.call("GET", "/api/openapi.json", token=None)
    settings = api.controller.settings
    assert settings.admin_token not in text
    assert settings.jwt_secret not in text


async def test_schemathesis_reads_every_operation(api: Api) -> None:
    """The fuzz run's reader takes the document whole: no operation it cannot use."""
    doc = await _document(api)
    operations = [
        result.ok() for result in schemathesis.openapi.from_dict(doc).get_all_operations()
    ]
    expected = sum(len([v for v in item if v != "parameters"]) for item in doc["paths"].values())
    assert len(operations) == expected
