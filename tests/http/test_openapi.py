"""``/openapi.json`` describes every route the app serves, and nothing it does not serve."""
from openapi_spec_validator import validate

import functions.app  # noqa: F401  (declares every route the document describes)
from functions.system.routes import openapi_document


def served_routes(app) -> set[tuple[str, str]]:
    return {(method.lower(), path) for path, entries in app.routes.items() for method in entries}


def documented_routes(document) -> set[tuple[str, str]]:
    return {(method, path) for path, operations in document["paths"].items() for method in operations
            if method in {"get", "post", "put", "patch", "delete"}}


def test_every_route_is_documented_and_every_documented_route_exists(app):
    document = openapi_document()
    served, documented = served_routes(app), documented_routes(document)
    assert sorted(served - documented) == [], "routes missing from the OpenAPI document"
    assert sorted(documented - served) == [], "the OpenAPI document names routes that do not exist"


def test_document_is_valid_openapi_3_and_served(client):
    document = openapi_document()
    validate(document)
    response = client.http.get("/openapi.json")
    assert response.status_code == 200 and response.json_body == document
