"""The identity part of the OpenAPI document (``functions/identity/openapi.json``, merged into
``/openapi.json``) names exactly the identity routes the app serves."""
import json
from pathlib import Path

import functions.identity.routes as identity_routes

FRAGMENT = Path(identity_routes.__file__).with_name("openapi.json")


def test_fragment_matches_the_routes():
    from functions.app import app

    served = {(method.lower(), path) for path, entries in app.routes.items() for method, entry in entries.items()
              if entry.view_function.__module__ == identity_routes.__name__}
    document = json.loads(FRAGMENT.read_text(encoding="utf-8"))
    described = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert described == served


def test_every_reference_resolves():
    document = json.loads(FRAGMENT.read_text(encoding="utf-8"))
    text = json.dumps(document)
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs <= set(document["components"]["schemas"])
