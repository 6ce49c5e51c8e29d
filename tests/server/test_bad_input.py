"""Bad input of every kind is a 4xx JSON error, never a 500."""
import json

import pytest

from tests.fixtures.server import DEFAULT_FACTS, ed25519_public_key
from tests.server.helpers import assert_error

JSON = {"Content-Type": "application/json"}


def raw(server, method, path, data, token=None, headers=None):
    headers = JSON if headers is None else headers
    token = server.operator_token if token is None else token
    return server.request(method, path, token=token, data=data, headers=headers)


@pytest.mark.parametrize("data", [b"{", b"{\"name\": }", b"nul", b"\xff\xfe\x00", b"{'name': 'x'}",
                                  b"{\"name\": \"x\",}", b"\"unterminated"])
def test_malformed_json_is_400(shared_marketplace, data):
    answer = raw(shared_marketplace, "POST", "/api/v1/devices", data)
    assert_error(answer, 400, "malformed_json")


@pytest.mark.parametrize("data", [b"[]", b"null", b"42", b"\"name\"", b"true"])
def test_json_that_is_not_an_object_is_422(shared_marketplace, data):
    assert_error(raw(shared_marketplace, "POST", "/api/v1/devices", data), 422, "invalid_request")


def test_form_body_is_415(shared_marketplace):
    answer = raw(shared_marketplace, "POST", "/api/v1/devices", b"name=x",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(answer, 415, "unsupported_media_type")


def test_empty_body_is_422(shared_marketplace):
    assert_error(raw(shared_marketplace, "POST", "/api/v1/devices", b""), 422, "invalid_request")


@pytest.mark.parametrize("body", [
    {}, {"name": ""}, {"name": "x" * 65}, {"name": 5}, {"name": True}, {"name": None}, {"name": ["x"]},
    {"name": "line\nbreak"}, {"name": "nul\x00"}, {"name": "ok", "description": "d" * 501},
    {"name": "ok", "owner": "has space"}, {"name": "ok", "owner": 1}, {"name": "ok", "token": "x"},
])
def test_bad_device_bodies(shared_marketplace, body):
    assert_error(shared_marketplace.request("POST", "/api/v1/devices", json=body), 422, "invalid_request")


def test_templating_names_are_plain_text(shared_marketplace):
    created = shared_marketplace.create_device("{{ 7*7 }}")
    assert created["device"]["name"] == "{{ 7*7 }}"


FACT_CHANGES = [
    {"memory_mb": True}, {"memory_mb": False}, {"memory_mb": "4096"}, {"memory_mb": 1.5}, {"memory_mb": 0},
    {"memory_mb": -1}, {"disk_gb": "29"}, {"disk_gb": True}, {"disk_gb": 0}, {"cpu_count": 4.0},
    {"cpu_count": None}, {"cpu_model": ""}, {"cpu_model": "x" * 3000}, {"cpu_model": 7},
    {"architecture": "arm 64"}, {"architecture": "a" * 40}, {"os": "x\ny"}, {"docker_version": ["20"]},
]


@pytest.mark.parametrize("change", FACT_CHANGES)
def test_bad_facts(shared_marketplace, shared_device, change):
    device_id, token = shared_device
    body = {"facts": dict(DEFAULT_FACTS, **change), "tunnel_public_key": ed25519_public_key()}
    answer = shared_marketplace.request("POST", f"/api/v1/devices/{device_id}/register", token=token, json=body)
    detail = assert_error(answer, 422, "invalid_request")["detail"]
    assert "facts." in detail and len(detail) <= 300


@pytest.mark.parametrize("missing", sorted(DEFAULT_FACTS))
def test_missing_fact(shared_marketplace, shared_device, missing):
    device_id, token = shared_device
    facts = {k: v for k, v in DEFAULT_FACTS.items() if k != missing}
    body = {"facts": facts, "tunnel_public_key": ed25519_public_key()}
    answer = shared_marketplace.request("POST", f"/api/v1/devices/{device_id}/register", token=token, json=body)
    assert missing in assert_error(answer, 422, "invalid_request")["detail"]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_rejected(shared_marketplace, shared_device, text):
    device_id, token = shared_device
    body = json.dumps({"facts": dict(DEFAULT_FACTS, disk_gb="@@"), "tunnel_public_key": ed25519_public_key()})
    body = body.replace('"@@"', text)
    answer = raw(shared_marketplace, "POST", f"/api/v1/devices/{device_id}/register", body.encode(), token=token)
    assert_error(answer, 422, "invalid_request")
    observed = '{"observed": {"load": %s}}' % text
    answer = raw(shared_marketplace, "POST", f"/api/v1/devices/{device_id}/checkin", observed.encode(), token=token)
    assert_error(answer, 422, "invalid_request")
    rental = ('{"device_id": "%s", "renter": "alice", "ssh_public_key": "%s", "hours": %s}'
              % (device_id, ed25519_public_key(), text))
    assert_error(raw(shared_marketplace, "POST", "/api/v1/rentals", rental.encode()), 422, "invalid_request")


@pytest.mark.parametrize("observed", [[], "x", 5, {"blob": "x" * 5000}])
def test_bad_observed(shared_marketplace, shared_device, observed):
    device_id, token = shared_device
    answer = shared_marketplace.request("POST", f"/api/v1/devices/{device_id}/checkin", token=token,
                                        json={"observed": observed})
    assert_error(answer, 422, "invalid_request")


def test_unknown_checkin_fields_are_ignored(shared_marketplace, shared_device):
    device_id, token = shared_device
    answer = shared_marketplace.request("POST", f"/api/v1/devices/{device_id}/checkin", token=token,
                                        json={"observed": {"a": 1}, "future_field": [1, 2]})
    assert answer.status_code == 200 and answer.json()["lease"] is None


def test_bad_tunnel_keys(shared_marketplace, shared_device):
    device_id, token = shared_device
    for key in ("", "ssh-ed25519", "ssh-ed25519 AAAA", 'from="*" ' + ed25519_public_key(), 42, None,
                ed25519_public_key() + "\n" + ed25519_public_key()):
        body = {"facts": DEFAULT_FACTS, "tunnel_public_key": key}
        answer = shared_marketplace.request("POST", f"/api/v1/devices/{device_id}/register", token=token, json=body)
        assert_error(answer, 422, "invalid_request")


def test_body_over_64_kib_is_413(shared_marketplace):
    big = {"name": "x", "description": "d" * (70 * 1024)}
    assert_error(shared_marketplace.request("POST", "/api/v1/devices", json=big), 413, "payload_too_large")

    def chunks():                                   # no Content-Length: streamed, cut off at the cap
        yield b'{"name": "x", "description": "'
        for dummy in range(80):
            yield b"d" * 1024
        yield b'"}'
    answer = shared_marketplace.request("POST", "/api/v1/devices", data=chunks(), headers=JSON)
    assert_error(answer, 413, "payload_too_large")


def test_huge_strings_below_the_cap_are_422(shared_marketplace):
    answer = shared_marketplace.request("POST", "/api/v1/devices", json={"name": "n" * 60000})
    detail = assert_error(answer, 422, "invalid_request")["detail"]
    assert "n" * 100 not in detail


@pytest.mark.parametrize("query", [
    "limit=0", "limit=501", "limit=abc", "limit=1.5", "limit=", "status=busy", "rented=maybe",
    "cursor=" + "A" * 300, "owner=" + "o" * 65,
])
def test_bad_list_queries_are_422(shared_marketplace, query):
    assert_error(shared_marketplace.request("GET", "/api/v1/devices?" + query), 422, "invalid_request")


@pytest.mark.parametrize("cursor", ["%%%", "not-a-cursor!", "____", "AA"])
def test_bad_cursor_is_400(shared_marketplace, cursor):
    answer = shared_marketplace.request("GET", "/api/v1/devices", params={"cursor": cursor})
    assert_error(answer, 400, "invalid_cursor")


def test_bad_path_ids(shared_marketplace):
    for path in ("/api/v1/devices/" + "a" * 65, "/api/v1/devices/bad%20id", "/api/v1/rentals/%3Cscript%3E"):
        answer = shared_marketplace.request("GET", path)
        assert answer.status_code in (404, 422), answer.text
        assert_error(answer, answer.status_code)


def test_wrong_method_is_405(shared_marketplace):
    assert_error(shared_marketplace.request("PUT", "/api/v1/devices", json={}), 405, "method_not_allowed")
