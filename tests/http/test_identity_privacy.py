from functions.core.observability import openid_hash
"""PIPL: no response ever carries an unmasked phone; logs carry no names, phones or addresses."""
import re

from tests.helpers import as_json, json_headers, login

PHONES = {"alice": "13812345678", "bob": "15987654321", "mallory": "17700001111"}
NAME = "张秀英"
ADDRESS = ("紫荆苑7幢", "3单元", "1204室")
UNMASKED = re.compile(r"1[3-9]\d{9}")


class RecordingHttp:
    """Wraps the test client's ``http`` and keeps every response body."""

    def __init__(self, http):
        self._http = http
        self.bodies = []

    def request(self, method, path, headers=None, body=b""):
        response = self._http.request(method, path, headers=headers or {}, body=body)
        self.bodies.append(response.body.decode() if isinstance(response.body, bytes) else str(response.body))
        return response

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)


class RecordingClient:
    def __init__(self, client):
        self.http = RecordingHttp(client.http)


def walk_every_identity_endpoint(client):
    """Registration, login, household, dependants, relatives, admin review — successes and refusals."""
    http = client.http
    residents = {}
    for openid, room in (("alice", ADDRESS[2]), ("bob", ADDRESS[2]), ("mallory", "9")):
        headers = login(client, openid)
        body = {"name": NAME, "phone": PHONES[openid], "building": ADDRESS[0], "unit": ADDRESS[1], "room": room,
                "birth_year": 1950}
        residents[openid] = (headers, http.post("/v1/residents", headers=headers, body=as_json(body)).json_body)
        http.post("/v1/residents", headers=headers, body=as_json(body))                    # 409
        http.post("/v1/residents", headers=headers, body=as_json({**body, "phone": "1" * 12}))  # 400
        http.post("/v1/auth/wechat", headers=json_headers(), body=as_json({"code": f"dev-{openid}"}))
        http.get("/v1/residents/me", headers=headers)
        http.get("/v1/households/mine", headers=headers)
    admin = login(client, "admin-test")
    for status in ("pending", "verified", "rejected"):
        http.get(f"/v1/admin/residents?status={status}", headers=admin)
    for openid in ("alice", "bob"):
        http.post(f"/v1/admin/residents/{residents[openid][1]['id']}/verify", headers=admin)
        http.get(f"/v1/admin/residents/{residents[openid][1]['id']}", headers=admin)
    http.post(f"/v1/admin/residents/{residents['mallory'][1]['id']}/reject", headers=admin,
              body=as_json({"reason": "地址不符"}))
    http.post(f"/v1/admin/residents/{residents['alice'][1]['id']}/reject", headers=admin,
              body=as_json({"reason": "x"}))                                                # 409
    alice = residents["alice"][0]
    http.post("/v1/households/mine/members", headers=alice,
              body=as_json({"name": NAME, "birth_year": 2019, "relation": "grandchild"}))
    http.post("/v1/households/mine/relatives", headers=alice,
              body=as_json({"household_id": residents["mallory"][1]["household_id"], "relation": "other"}))
    for openid in ("alice", "bob", "mallory"):
        http.get("/v1/households/mine", headers=residents[openid][0])
        http.get("/v1/residents/me", headers=residents[openid][0])
    for status in ("pending", "verified", "rejected"):
        http.get(f"/v1/admin/residents?status={status}", headers=admin)


def test_no_response_body_contains_an_unmasked_phone(client):
    recording = RecordingClient(client)
    walk_every_identity_endpoint(recording)
    bodies = recording.http.bodies
    assert len(bodies) > 30
    assert any("138****5678" in body for body in bodies)  # the phone is there, masked
    for body in bodies:
        assert not UNMASKED.search(body), body
        for phone in PHONES.values():
            assert phone not in body


def test_logs_carry_no_personal_data(client, caplog):
    # INFO is what a deployed stage logs (botocore's DEBUG wire dumps are never enabled there).
    caplog.set_level("INFO")
    caplog.set_level("DEBUG", logger="timebank")
    walk_every_identity_endpoint(RecordingClient(client))
    audit = [r for r in caplog.records if getattr(r, "audit", False)]
    assert {r.getMessage() for r in audit} >= {"residents listed", "resident viewed", "resident verified",
                                                "resident rejected"}
    # The admin is named by the same keyed digest as in every other log line, never the raw openid.
    assert all(r.actor == openid_hash("admin-test") for r in audit) and any(r.resident_ids for r in audit)
    logs = " ".join(str(record.__dict__) for record in caplog.records)
    for secret in (NAME, *PHONES.values(), *ADDRESS):
        assert secret not in logs
