"""Rentals: create, get, patch, end; leases in check-ins; expiry; rentability (409)."""
import datetime as dt
import time

import pytest

from tests.fixtures.server import ed25519_public_key
from tests.server.helpers import assert_error, parse_time

RENTAL_KEYS = {"id", "device_id", "renter", "username", "ssh_authorized_keys", "image", "limits",
               "created_at", "expires_at", "ended_at", "active", "tunnel", "web", "ssh_host_key",
               "ssh_host_key_fingerprint"}
LIMITS = {"memory_mb": 256, "cpus": 0.5, "pids": 128, "disk_gb": 1}


def rental_body(device_id, **extra):
    body = {"device_id": device_id, "renter": "alice", "ssh_public_key": ed25519_public_key(), "hours": 1}
    body.update(extra)
    return body


def test_rental_lifecycle(marketplace):
    device_id, token = marketplace.online_device()
    key = ed25519_public_key("alice@laptop")
    rental = marketplace.create_rental(device_id, renter="alice", ssh_public_key=key, hours=2, limits=LIMITS)
    assert set(rental) == RENTAL_KEYS
    assert rental["device_id"] == device_id and rental["renter"] == rental["username"] == "alice"
    assert rental["ssh_authorized_keys"] == [key] and rental["limits"] == LIMITS
    assert rental["image"] == "p2pvps/renter:latest" and rental["active"] is True and rental["ended_at"] is None
    assert rental["tunnel"] == {"host": "127.0.0.1", "remote_port": 20000, "web_remote_port": None}
    assert rental["web"] is None                                               # web hosting is off
    lasts = parse_time(rental["expires_at"]) - parse_time(rental["created_at"])
    assert dt.timedelta(hours=2) - dt.timedelta(seconds=2) < lasts <= dt.timedelta(hours=2)

    lease = marketplace.checkin(device_id, token)["lease"]
    assert lease == {"id": rental["id"], "username": "alice", "ssh_authorized_keys": [key],
                     "image": "p2pvps/renter:latest", "expires_at": rental["expires_at"], "limits": LIMITS,
                     "web": None}
    device = marketplace.request("GET", f"/api/v1/devices/{device_id}").json()
    assert device["lease"] == {"id": rental["id"], "renter": "alice", "username": "alice",
                               "expires_at": rental["expires_at"]}
    assert device["rentable"] is False
    assert marketplace.get_rental(rental["id"]) == rental

    ended = marketplace.end_rental(rental["id"])
    assert ended["id"] == rental["id"] and ended["active"] is False and parse_time(ended["ended_at"])
    assert marketplace.end_rental(rental["id"])["ended_at"] == ended["ended_at"]       # idempotent
    assert marketplace.checkin(device_id, token)["lease"] is None
    assert marketplace.request("GET", f"/api/v1/devices/{device_id}").json()["rentable"] is True
    second = marketplace.create_rental(device_id, renter="bob")
    assert second["id"] != rental["id"]


def test_default_limits_and_image_and_key_list(marketplace):
    device_id, dummy = marketplace.online_device()
    keys = [ed25519_public_key("k1"), ed25519_public_key("k2")]
    answer = marketplace.request("POST", "/api/v1/rentals", json={
        "device_id": device_id, "renter": "carol", "ssh_public_keys": keys, "duration_s": 600,
        "image": "registry.example.org:5000/p2pvps/renter:1.2", "limits": {"memory_mb": 1024}})
    assert answer.status_code == 201, answer.text
    rental = answer.json()
    assert rental["ssh_authorized_keys"] == keys
    assert rental["image"] == "registry.example.org:5000/p2pvps/renter:1.2"
    assert rental["limits"] == {"memory_mb": 1024, "cpus": 1.0, "pids": 256, "disk_gb": 2}
    lasts = parse_time(rental["expires_at"]) - parse_time(rental["created_at"])
    assert dt.timedelta(seconds=598) < lasts <= dt.timedelta(seconds=600)


def test_patch_rental_keys_and_limits(marketplace):
    device_id, token = marketplace.online_device()
    rental = marketplace.create_rental(device_id, limits=LIMITS)
    new_key = ed25519_public_key("new@laptop")
    patched = marketplace.patch_rental(rental["id"], ssh_public_keys=[new_key])
    assert patched["id"] == rental["id"] and patched["ssh_authorized_keys"] == [new_key]
    assert patched["limits"] == LIMITS
    patched = marketplace.patch_rental(rental["id"], limits={"memory_mb": 512, "cpus": 1, "pids": 256})
    assert patched["limits"] == {"memory_mb": 512, "cpus": 1.0, "pids": 256, "disk_gb": 1}
    lease = marketplace.checkin(device_id, token)["lease"]
    assert lease["id"] == rental["id"] and lease["ssh_authorized_keys"] == [new_key]
    assert lease["limits"] == patched["limits"] and lease["expires_at"] == rental["expires_at"]

    assert_error(marketplace.request("PATCH", f"/api/v1/rentals/{rental['id']}", json={}), 422, "invalid_request")
    marketplace.end_rental(rental["id"])
    late = marketplace.request("PATCH", f"/api/v1/rentals/{rental['id']}", json={"limits": {"pids": 64}})
    assert_error(late, 409, "rental_not_active")


def test_lease_expires_with_duration_s(marketplace):
    device_id, token = marketplace.online_device()
    rental = marketplace.create_rental(device_id, duration_s=10)
    assert marketplace.checkin(device_id, token)["lease"]["id"] == rental["id"]
    expires = parse_time(rental["expires_at"])
    while dt.datetime.now(dt.UTC) < expires + dt.timedelta(seconds=0.3):
        time.sleep(0.2)
    assert marketplace.checkin(device_id, token)["lease"] is None
    assert marketplace.get_rental(rental["id"])["active"] is False
    device = marketplace.request("GET", f"/api/v1/devices/{device_id}").json()
    assert device["lease"] is None and device["rentable"] is True
    again = marketplace.create_rental(device_id, renter="bob", duration_s=10)     # expired lease closed
    assert again["active"] is True
    assert marketplace.get_rental(rental["id"])["ended_at"] == rental["expires_at"]


def test_not_rentable_is_409(marketplace_factory):
    server = marketplace_factory(offline_after=1)
    unregistered_id, unregistered_token = server.create_device("pi-unregistered")
    server.checkin(unregistered_id, unregistered_token)
    assert_error(server.request("POST", "/api/v1/rentals", json=rental_body(unregistered_id)),
                 409, "device_not_rentable")

    silent_id, silent_token = server.create_device("pi-silent")       # registered, never checked in
    server.register_device(silent_id, silent_token)
    assert_error(server.request("POST", "/api/v1/rentals", json=rental_body(silent_id)), 409, "device_not_rentable")

    device_id, dummy = server.online_device()
    time.sleep(1.6)
    offline = server.request("POST", "/api/v1/rentals", json=rental_body(device_id))
    assert "offline" in assert_error(offline, 409, "device_not_rentable")["detail"]


def test_second_rental_on_a_leased_device_is_409(marketplace):
    device_id, dummy = marketplace.online_device()
    marketplace.create_rental(device_id)
    answer = marketplace.request("POST", "/api/v1/rentals", json=rental_body(device_id, renter="bob"))
    assert_error(answer, 409, "device_not_rentable")


@pytest.mark.parametrize("renter", ["root", "pi", "tunnel", "Alice", "1abc", "a" * 33, "al ice", "bob;id", ""])
def test_bad_renter_names(shared_marketplace, shared_device, renter):
    device_id, dummy = shared_device
    answer = shared_marketplace.request("POST", "/api/v1/rentals", json=rental_body(device_id, renter=renter))
    assert_error(answer, 422, "invalid_request")


def _key_with_type(declared, inner=b"ssh-ed25519"):
    import base64
    import struct
    blob = struct.pack(">I", len(inner)) + inner + struct.pack(">I", 32) + b"\x01" * 32
    return f"{declared} {base64.b64encode(blob).decode()}"


@pytest.mark.parametrize("key", [
    "",
    "not a key",
    'command="/bin/sh" ' + ed25519_public_key(),                        # options
    ed25519_public_key() + "\nssh-ed25519 AAAA",                        # two lines
    ed25519_public_key("with\ttab"),
    "ssh-dss AAAAB3NzaC1kc3MAAACBAP",                                   # type not allowed
    "ssh-ed25519 !!!notbase64!!!",
    _key_with_type("ssh-rsa"),                                          # body is not an rsa key
    "ssh-ed25519 " + "A" * 5000,                                        # too long
], ids=["empty", "not-a-key", "options", "two-lines", "tab", "dss", "not-base64", "wrong-type", "too-long"])
def test_bad_ssh_keys(shared_marketplace, shared_device, key):
    device_id, dummy = shared_device
    answer = shared_marketplace.request("POST", "/api/v1/rentals", json=rental_body(device_id, ssh_public_key=key))
    assert_error(answer, 422, "invalid_request")


def test_good_key_types(marketplace):
    device_id, dummy = marketplace.online_device()
    keys = [_key_with_type("ssh-ed25519"),
            _key_with_type("ecdsa-sha2-nistp256", b"ecdsa-sha2-nistp256"),
            _key_with_type("ssh-rsa", b"ssh-rsa") + " user@host"]
    body = rental_body(device_id, ssh_public_keys=keys)
    del body["ssh_public_key"]
    rental = marketplace.request("POST", "/api/v1/rentals", json=body)
    assert rental.status_code == 201, rental.text
    assert rental.json()["ssh_authorized_keys"] == keys


@pytest.mark.parametrize("change", [
    {"hours": 0}, {"hours": -1}, {"hours": 721}, {"hours": True}, {"hours": "1"}, {"hours": None},
    {"hours": 1, "duration_s": 60}, {"hours": None, "duration_s": 9}, {"hours": None, "duration_s": 2592001},
    {"hours": None, "duration_s": 60.0}, {"limits": {"memory_mb": 32}}, {"limits": {"cpus": 0}},
    {"limits": {"pids": True}}, {"limits": {"disk_gb": 1.5}}, {"limits": {"swap": 1}}, {"limits": []},
    {"image": "Renter"}, {"image": "evil image"}, {"image": "a" * 300}, {"unknown": 1},
    {"ssh_public_keys": []}, {"ssh_public_key": None}, {"device_id": 5}, {"renter": None},
])
def test_bad_rental_bodies(shared_marketplace, shared_device, change):
    device_id, dummy = shared_device
    body = dict(rental_body(device_id), **change)
    body = {k: v for k, v in body.items() if v is not None}
    assert_error(shared_marketplace.request("POST", "/api/v1/rentals", json=body), 422, "invalid_request")
