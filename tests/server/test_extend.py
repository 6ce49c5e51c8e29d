"""Rental extension (POST /rentals/{id}/extend): the renter's own rental only, later only, bounded;
an expired rental only within --extend-window and while its device has not checked in since
(the device keeps it frozen, data kept, until it hears of the extension)."""
import datetime as dt
import time

import pytest

from tests.fixtures.server import ed25519_public_key
from tests.server.helpers import assert_error, parse_time

HOUR = dt.timedelta(hours=1)


def z(value):
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def extend(server, rental_id, body, token="operator"):
    kwargs = {} if token == "operator" else {"token": token}
    return server.request("POST", f"/api/v1/rentals/{rental_id}/extend", json=body, **kwargs)


def wait_until(moment):
    while dt.datetime.now(dt.timezone.utc) < moment:
        time.sleep(0.1)


def test_extend_a_live_rental_keeps_the_lease(marketplace):
    device_id, token = marketplace.online_device()
    rental = marketplace.create_rental(device_id, renter="alice", hours=1)
    later = parse_time(rental["expires_at"]) + 2 * HOUR
    extended = marketplace.extend_rental(rental["id"], "alice", later)
    assert extended["id"] == rental["id"] and extended["active"] is True
    assert extended["expires_at"] == z(later) and extended["ssh_authorized_keys"] == rental["ssh_authorized_keys"]
    lease = marketplace.checkin(device_id, token)["lease"]
    assert lease["id"] == rental["id"] and lease["expires_at"] == z(later)
    assert marketplace.get_rental(rental["id"]) == extended
    # any RFC 3339 offset, fractions dropped
    again = marketplace.extend_rental(rental["id"], "alice", "%s.999+02:00" % (later + 3 * HOUR).strftime(
        "%Y-%m-%dT%H:%M:%S"))
    assert again["expires_at"] == z(later + HOUR)
    device = marketplace.request("GET", f"/api/v1/devices/{device_id}").json()
    assert device["lease"]["expires_at"] == z(later + HOUR)


def test_only_the_operator_for_the_renter_who_owns_it(marketplace):
    device_id, token = marketplace.online_device()
    rental = marketplace.create_rental(device_id, renter="alice", hours=1)
    later = z(parse_time(rental["expires_at"]) + HOUR)
    body = {"renter": "alice", "expires_at": later}
    assert_error(extend(marketplace, rental["id"], body, token=None), 401, "unauthorized")
    assert_error(extend(marketplace, rental["id"], body, token="not-a-token"), 401, "unauthorized")
    assert_error(extend(marketplace, rental["id"], body, token=token), 403, "forbidden")          # the device
    assert_error(extend(marketplace, rental["id"], body, token=marketplace.gateway_token), 403, "forbidden")
    other = dict(body, renter="bob")
    assert "another renter" in assert_error(extend(marketplace, rental["id"], other), 403, "forbidden")["detail"]
    assert_error(extend(marketplace, "0c8a8f9e-0000-4000-8000-000000000000", body), 404, "not_found")
    assert marketplace.get_rental(rental["id"])["expires_at"] == rental["expires_at"]     # nothing changed


def test_later_only_and_bounded(marketplace):
    device_id, dummy = marketplace.online_device()
    rental = marketplace.create_rental(device_id, renter="alice", hours=1)
    expires = parse_time(rental["expires_at"])
    now = dt.datetime.now(dt.timezone.utc)
    for when in (expires, expires - dt.timedelta(seconds=1), now - HOUR,
                 now + dt.timedelta(days=30, minutes=5)):
        answer = extend(marketplace, rental["id"], {"renter": "alice", "expires_at": z(when)})
        assert_error(answer, 422, "invalid_request")
    assert marketplace.get_rental(rental["id"])["expires_at"] == rental["expires_at"]
    longest = marketplace.extend_rental(rental["id"], "alice", now + dt.timedelta(days=29, hours=23))
    assert longest["active"] is True


@pytest.mark.parametrize("body", [
    {}, {"renter": "alice"}, {"expires_at": "2030-01-01T00:00:00Z"},
    {"renter": "alice", "expires_at": "2030-01-01T00:00:00"},              # no offset: refused, never guessed
    {"renter": "alice", "expires_at": "2030-01-01 00:00:00Z"},
    {"renter": "alice", "expires_at": "2030-02-30T00:00:00Z"},
    {"renter": "alice", "expires_at": "2030-01-01T25:00:00Z"},
    {"renter": "alice", "expires_at": "2030-01-01T00:00:00+24:00"},
    {"renter": "alice", "expires_at": "2030-01-01T00:00:00.1234567Z"},
    {"renter": "alice", "expires_at": "tomorrow"}, {"renter": "alice", "expires_at": 1893456000},
    {"renter": "alice", "expires_at": None}, {"renter": "alice", "expires_at": ["2030-01-01T00:00:00Z"]},
    {"renter": "alice", "expires_at": "2030-01-01T00:00:00Z" + " " * 40},
    {"renter": "alice", "expires_at": "2030-01-01T00:00:00Z\n"},
    {"renter": "Alice; DROP", "expires_at": "2030-01-01T00:00:00Z"}, {"renter": 5, "expires_at": "2030-01-01T00:00:00Z"},
    {"renter": "alice", "expires_at": "2030-01-01T00:00:00Z", "hours": 1},
])
def test_hostile_bodies_are_422(shared_marketplace, body):
    # The rental id is checked after the body: a bad body is 422 whatever the id.
    answer = extend(shared_marketplace, "0c8a8f9e-0000-4000-8000-000000000000", body)
    assert_error(answer, 422, "invalid_request")


@pytest.mark.parametrize("path", ["/api/v1/rentals/..%2F..%2Fdevices/extend", "/api/v1/rentals/" + "a" * 65 + "/extend",
                                  "/api/v1/rentals/bad%20id/extend"])
def test_hostile_ids(shared_marketplace, path):
    answer = shared_marketplace.request("POST", path, json={"renter": "alice", "expires_at": "2030-01-01T00:00:00Z"})
    assert answer.status_code in (404, 422), answer.text
    assert_error(answer, answer.status_code)


def test_ended_rental_cannot_be_extended(marketplace):
    device_id, dummy = marketplace.online_device()
    rental = marketplace.create_rental(device_id, renter="alice", hours=1)
    marketplace.end_rental(rental["id"])
    later = z(parse_time(rental["expires_at"]) + HOUR)
    assert_error(extend(marketplace, rental["id"], {"renter": "alice", "expires_at": later}), 409, "rental_not_extendable")


def test_expired_rental_within_the_window_while_its_device_keeps_it_frozen(marketplace_factory):
    """Three rentals expire together: one extended while its device has not checked in since (the
    same lease comes back), one whose device checked in after the expiry (it wiped: refused), one
    after the window (refused)."""
    server = marketplace_factory(extend_window=3)
    devices = [server.online_device() for dummy in range(3)]
    rentals = [server.create_rental(device_id, renter="alice", duration_s=10,
                                    ssh_public_key=ed25519_public_key("a%d" % n))
               for n, (device_id, dummy) in enumerate(devices)]
    expires = max(parse_time(rental["expires_at"]) for rental in rentals)
    wait_until(expires + dt.timedelta(seconds=0.3))
    (frozen_id, frozen_token), (told_id, told_token), dummy = devices
    assert server.checkin(told_id, told_token)["lease"] is None          # told the lease is over: it wipes
    later = dt.datetime.now(dt.timezone.utc) + HOUR

    extended = server.extend_rental(rentals[0]["id"], "alice", later)
    assert extended["active"] is True and extended["expires_at"] == z(later)
    assert server.checkin(frozen_id, frozen_token)["lease"]["id"] == rentals[0]["id"]
    refused = extend(server, rentals[1]["id"], {"renter": "alice", "expires_at": z(later)})
    assert "checked in since" in assert_error(refused, 409, "rental_not_extendable")["detail"]

    wait_until(parse_time(rentals[2]["expires_at"]) + dt.timedelta(seconds=3.5))
    late = extend(server, rentals[2]["id"], {"renter": "alice", "expires_at": z(later)})
    assert "expired more than 3 s ago" in assert_error(late, 409, "rental_not_extendable")["detail"]


def test_a_newer_rental_on_the_device_ends_the_expired_one(marketplace):
    device_id, dummy = marketplace.online_device()
    rental = marketplace.create_rental(device_id, renter="alice", duration_s=10)
    wait_until(parse_time(rental["expires_at"]) + dt.timedelta(seconds=0.3))
    marketplace.create_rental(device_id, renter="bob", hours=1)
    later = z(dt.datetime.now(dt.timezone.utc) + HOUR)
    assert_error(extend(marketplace, rental["id"], {"renter": "alice", "expires_at": later}), 409, "rental_not_extendable")
