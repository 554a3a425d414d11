"""The OpenAPI document is built from the routes' own declarations: request bodies, parameters
and error responses come from the code that validates them; the domains' hand-written
``openapi.json`` hold response schemas only."""
import json
from pathlib import Path

import pytest

from functions.core.errors import ValidationError
from functions.system.routes import app_routes  # the community app's (not the district hub's)

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


@pytest.fixture(scope="module")
def document():
    import functions.app  # noqa: F401  (declares every route)
    from functions.system.routes import openapi_document

    return openapi_document()


def test_hand_written_fragments_hold_response_schemas_only():
    for path in sorted(FUNCTIONS.glob("*/openapi.json")):
        fragment = json.loads(path.read_text(encoding="utf-8"))
        assert set(fragment) == {"components"} and set(fragment["components"]) == {"schemas"}, path


def test_every_request_body_is_the_schema_that_validates_it(document):
    bodies = [spec for spec in app_routes() if spec.body is not None]
    assert len(bodies) >= 20
    for spec in bodies:
        operation = document["paths"][spec.path][spec.method]
        documented = operation["requestBody"]["content"]["application/json"]["schema"]
        if spec.body.name:
            assert documented == {"$ref": f"#/components/schemas/{spec.body.name}"}
            documented = document["components"]["schemas"][spec.body.name]
        assert documented == spec.body.definition()
        assert documented["additionalProperties"] is False


def test_every_declared_error_is_documented_with_its_status(document):
    for spec in app_routes():
        responses = document["paths"][spec.path][spec.method]["responses"]
        for error in spec.errors:
            status, code = error if isinstance(error, tuple) else (error.status, error.code)
            assert code in responses[str(status)]["description"], (spec.path, spec.method, code)
        if spec.auth.value != "public":
            assert "401" in responses, (spec.path, spec.method)


def test_a_body_with_an_unknown_field_is_refused_naming_it():
    from functions.ledger.routes import TRANSFER

    with pytest.raises(ValidationError) as error:
        TRANSFER.validate({"to": {"district": "xihu", "resident_id": "res_1"}, "amount": 5})
    assert error.value.details["fields"] == {"to.district": "不支持该字段"}
    with pytest.raises(ValidationError) as error:
        TRANSFER.validate({"to": {"pool": True}, "amount": 5, "note": "x"})
    assert error.value.details["fields"] == {"note": "不支持该字段"}
