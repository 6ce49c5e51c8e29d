"""Signed wipe receipts: reported at check-in, verified (ssh-keygen -Y verify), stored, acknowledged, fetched.

The device side is the collection's own (plugins/module_utils/_receipts.py, real ssh-keygen keys and
signatures); the server is the real reference server over HTTP.
"""
import datetime as dt
import json

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils._receipts import Outbox, canonical
from tests.fixtures.server import assert_receipt_verifies, verify_receipt_offline
from tests.server.helpers import assert_error, parse_time

WIPED = {"containers": ["c0ffee" * 10 + "abcd"], "volumes": ["p2pvps-lease-x"],
         "disk_image": "/var/lib/p2pvps/disks/x.img", "bytes": 2 * 1024 ** 3}
NOW = dt.datetime(2026, 12, 2, 1, 0, tzinfo=dt.UTC)


def checkin(marketplace, device, body, status=200):
    response = marketplace.request("POST", f"/api/v1/devices/{device[0]}/checkin", token=device[1],
                                   json=dict(body, observed={}))
    if status != 200:
        return response
    assert response.status_code == 200, response.text
    return response.json()


def ended_rental(marketplace, device):
    rental = marketplace.create_rental(device[0], renter="rita")
    marketplace.end_rental(rental["id"])
    return rental["id"]


def test_a_receipt_is_verified_stored_acknowledged_and_verifies_offline(marketplace, tmp_path):
    device = marketplace.online_device()
    lease_id = ended_rental(marketplace, device)
    outbox = Outbox(str(tmp_path / "state"), device[0])
    assert_error(marketplace.request("GET", f"/api/v1/rentals/{lease_id}/receipt"), 404, "not_found")

    text = outbox.record(lease_id, WIPED, NOW, "no lease on the marketplace")
    assert json.loads(text)["bytes"] == 2 * 1024 ** 3 and canonical(json.loads(text)) == text
    report, warnings = outbox.report(create_key=True)
    assert not warnings and len(report["receipts"]) == 1
    answer = checkin(marketplace, device, report)
    assert answer["receipts_acknowledged"] == [lease_id] and answer["receipts_refused"] == []
    assert outbox.settle(answer) == ([lease_id], []) and outbox.pending() == ([], [])

    fetched = marketplace.receipt(lease_id)
    assert fetched["rental_id"] == lease_id and fetched["device_id"] == device[0]
    assert fetched["receipt"] == text and fetched["public_key"] == report["receipt_public_key"]
    assert fetched["wipe"]["volumes"] == ["p2pvps-lease-x"] and fetched["wipe"]["wiped_at"] == "2026-12-02T01:00:00Z"
    parse_time(fetched["received_at"])
    device_view = marketplace.request("GET", f"/api/v1/devices/{device[0]}").json()
    assert device_view["receipt_public_key"] == report["receipt_public_key"]

    assert_receipt_verifies(fetched, tmp_path)
    tampered = fetched["receipt"].replace('"bytes":2147483648', '"bytes":0')
    assert verify_receipt_offline(fetched, tmp_path, tampered).returncode != 0

    # reported again (the acknowledgement was lost): acknowledged again, the first receipt kept
    again = checkin(marketplace, device, report)
    assert again["receipts_acknowledged"] == [lease_id]
    assert marketplace.request("GET", f"/api/v1/rentals/{lease_id}/receipt").json()["receipt"] == text


def test_tampered_foreign_and_malformed_receipts_are_refused(marketplace, tmp_path):
    mine, other = marketplace.online_device(), marketplace.online_device()
    my_lease, other_lease = ended_rental(marketplace, mine), ended_rental(marketplace, other)
    outbox = Outbox(str(tmp_path / "mine"), mine[0])
    key = outbox.public_key(create=True)

    def signed(lease_id, device_id=mine[0], **changes):
        fields = json.loads(Outbox(str(tmp_path / "tmp"), device_id).record(lease_id, WIPED, NOW, "t"))
        fields.update(changes)
        text = canonical(fields)
        return {"receipt": text, "signature": outbox.sign(text)}

    good = signed(my_lease)
    cases = {
        "bad_signature": dict(good, receipt=good["receipt"].replace('"bytes":2147483648', '"bytes":1')),
        "foreign_lease": signed(other_lease),                         # a lease of another device
        "foreign_receipt": signed(my_lease, device_id=other[0]),      # in another device's name
        "malformed_receipt": dict(good, receipt=json.dumps(json.loads(good["receipt"]), indent=1)),
    }
    by_other_key = Outbox(str(tmp_path / "other"), mine[0])
    by_other_key.public_key(create=True)
    cases["bad_signature_other_key"] = dict(good, signature=by_other_key.sign(good["receipt"]))
    for expected, receipt in cases.items():
        answer = checkin(marketplace, mine, {"receipt_public_key": key, "receipts": [receipt]})
        assert answer["receipts_acknowledged"] == [], expected
        error = expected.replace("_other_key", "")
        assert [r["error"] for r in answer["receipts_refused"]] == [error], (expected, answer)
    for lease_id in (my_lease, other_lease):
        assert_error(marketplace.request("GET", f"/api/v1/rentals/{lease_id}/receipt"), 404, "not_found")
    # the good one is taken after all that
    assert checkin(marketplace, mine, {"receipt_public_key": key, "receipts": [good]})["receipts_acknowledged"] \
        == [my_lease]


@pytest.mark.parametrize("body, status", [
    ({"receipts": [{"receipt": "{}", "signature": "x"}] * 9}, 422),        # more than 8 at once
    ({"receipts": [{"receipt": "x" * 4097, "signature": "x"}]}, 422),       # one too long
    ({"receipt_public_key": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ"}, 422),  # not ed25519
    ({"receipts": [{"receipt": "{}", "signature": "x" * 2000}] * 8, "pad": "x" * 70000}, 413),
])
def test_hostile_receipt_bodies(shared_marketplace, shared_device, body, status):
    response = checkin(shared_marketplace, shared_device, body, status=status)
    assert_error(response, status)


def test_only_the_operator_fetches_a_receipt(shared_marketplace, shared_device):
    assert_error(shared_marketplace.request("GET", "/api/v1/rentals/nope/receipt"), 404, "not_found")
    rental_id = "00000000-0000-0000-0000-000000000000"
    assert_error(shared_marketplace.request("GET", f"/api/v1/rentals/{rental_id}/receipt",
                                            token=shared_device[1]), 403)
    assert_error(shared_marketplace.request("GET", f"/api/v1/rentals/{rental_id}/receipt", token=None), 401)
