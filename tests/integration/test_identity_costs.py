"""DynamoDB calls per identity operation (moto's ConsumedCapacity is a constant: count calls)."""
import pytest

from functions import bootstrap
from tests.helpers import (
    admin_headers, as_json, declare_relatives, login, register, verified_resident, verify,
)


def test_authentication_costs_exactly_one_get_item(client, dynamo_calls):
    anonymous = login(client, "nobody")
    # POST /v1/residents with an empty body: authenticated (LOGIN), then refused by validation.
    calls = dynamo_calls.during(lambda: client.http.post("/v1/residents", headers=anonymous, body="{}"))
    assert calls == {"GetItem": 1}
    assert dynamo_calls.tables == ["timebank-test-logins"]


def test_a_registered_residents_token_carries_the_login_and_reads_no_table(client, dynamo_calls):
    headers, resident = verified_resident(client, "carol", room="303")
    headers = login(client, "carol")  # issued after verification: carries the verified login
    calls = dynamo_calls.during(lambda: client.http.get("/v1/residents/me", headers=headers))
    assert calls == {"GetItem": 1}  # the resident item the route shows; no login read
    assert "timebank-test-logins" not in dynamo_calls.tables
    # Logging out revokes it at once (the revocation version moved: the login item decides).
    assert client.http.post("/v1/auth/logout", headers=headers).status_code == 200
    assert client.http.get("/v1/residents/me", headers=headers).status_code == 401


def test_a_downgrade_sends_older_tokens_back_to_the_login_item(client, dynamo_calls):
    admin = admin_headers(client)
    headers, resident = verified_resident(client, "dave", room="404")
    headers = login(client, "dave")
    assert client.http.get("/v1/accounts/me", headers=headers).status_code == 200
    from functions.identity.dynamo import DynamoIdentityStore

    before = DynamoIdentityStore().revocation_version(max_age=0)
    store = bootstrap.identity().store
    store.set_roles(store.get_resident(resident["household_id"], resident["id"]), frozenset())
    assert DynamoIdentityStore().revocation_version() == before + 1
    calls = dynamo_calls.during(lambda: client.http.get("/v1/accounts/me", headers=headers))
    assert "timebank-test-logins" in dynamo_calls.tables and calls["GetItem"] >= 1


def test_costs_of_the_main_operations(client, dynamo_calls):
    admin = admin_headers(client)
    headers = login(client, "alice")
    body = as_json({"name": "王芳", "phone": "13812345678", "building": "1", "unit": "1", "room": "101",
                    "birth_year": 1980})
    costs = {
        "login": dynamo_calls.during(lambda: login(client, "alice")),
        "register": dynamo_calls.during(lambda: client.http.post("/v1/residents", headers=headers, body=body)),
        "me": dynamo_calls.during(lambda: client.http.get("/v1/residents/me", headers=headers)),
    }
    resident_id = client.http.get("/v1/residents/me", headers=headers).json_body["id"]
    costs["verify"] = dynamo_calls.during(lambda: client.http.post(
        f"/v1/admin/residents/{resident_id}/verify", headers=admin))
    costs["household"] = dynamo_calls.during(lambda: client.http.get("/v1/households/mine", headers=headers))
    costs["add_dependant"] = dynamo_calls.during(lambda: client.http.post(
        "/v1/households/mine/members", headers=headers,
        body=as_json({"name": "奶奶", "birth_year": 1940, "relation": "parent"})))
    print("\nDynamoDB calls per identity operation:", costs)
    # no resident yet: the revocation version (carried by a resident's token), the login item
    assert costs["login"] == {"GetItem": 2}
    # auth, the flat's household; the phone index: is there an imported record to take over?
    assert costs["register"] == {"GetItem": 2, "Query": 1, "TransactWriteItems": 1}
    assert costs["me"] == {"GetItem": 2}
    assert costs["household"] == {"GetItem": 3, "Query": 3}
    # The limit is a condition of the write: no Query of the household's members first.
    assert costs["add_dependant"] == {"GetItem": 2, "TransactWriteItems": 1}
    # verify: auth, find by id (index) + current item, household read, is the grant there
    # already; then status, mark and starting credits in ONE transaction.
    assert costs["verify"] == {"GetItem": 4, "Query": 1, "TransactWriteItems": 1}


def test_transfer_target_costs(client, dynamo_calls):
    alice, a = verified_resident(client, "alice", room="101")
    grandma, g = verified_resident(client, "grandma", room="202")
    declare_relatives(client, alice, a["household_id"], grandma, g["household_id"])
    caller = bootstrap.identity().caller_from(bootstrap.identity().login_state("alice"))
    owners = bootstrap.account_owners()
    assert dynamo_calls.during(lambda: owners.recipient(caller, "household_id", a["household_id"])) == {}
    assert dynamo_calls.during(lambda: owners.recipient(caller, "household_id", g["household_id"])) == \
        {"BatchGetItem": 1}
    assert dynamo_calls.during(lambda: owners.recipient(caller, "resident_id", g["id"])) == \
        {"Query": 1, "BatchGetItem": 1}


def test_register_then_verify_keeps_one_household_item(client):
    for i in range(3):
        register(client, f"u{i}", building="2幢", unit="1", room="301")
    verify(client, bootstrap.identity().login_state("u0").resident_id)
    import boto3

    assert boto3.client("dynamodb").scan(TableName="timebank-test-households")["Count"] == 1
