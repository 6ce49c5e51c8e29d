"""The lease's SSH host key: reported by the device at check-in, validated strictly (a hostile device may send
anything), stored on its current rental only, shown with the fingerprint ssh-keygen -lf prints."""
import base64
import struct
import subprocess

import pytest

from p2pvps_server.validation import check_host_public_key, host_key_fingerprint
from tests.fixtures.server import ed25519_public_key
from tests.server.helpers import assert_error


def host_key():
    return ed25519_public_key(comment=None)


def checkin(marketplace, device, lease_id, key):
    return marketplace.request("POST", f"/api/v1/devices/{device[0]}/checkin", token=device[1],
                               json={"observed": {"lease_id": lease_id}, "host_public_key": key})


def ssh_keygen_fingerprint(key, tmp_path):
    path = tmp_path / "key.pub"
    path.write_text(key + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def test_the_rental_shows_the_reported_key_and_its_fingerprint(marketplace, tmp_path):
    device = marketplace.online_device()
    rental = marketplace.create_rental(device[0], renter="alice")
    assert rental["ssh_host_key"] is None and rental["ssh_host_key_fingerprint"] is None
    key = host_key()
    response = checkin(marketplace, device, rental["id"], key + "\n")
    assert response.status_code == 200, response.text
    assert response.json()["lease"]["id"] == rental["id"]
    shown = marketplace.get_rental(rental["id"])
    assert shown["ssh_host_key"] == key
    assert shown["ssh_host_key_fingerprint"] == ssh_keygen_fingerprint(key, tmp_path)
    assert shown["ssh_host_key_fingerprint"].startswith("SHA256:")
    # a container made again for the lease has a new key: the newest report wins
    newer = host_key()
    assert checkin(marketplace, device, rental["id"], newer).status_code == 200
    assert marketplace.get_rental(rental["id"])["ssh_host_key"] == newer
    # a check-in without the field changes nothing (older devices)
    marketplace.checkin(*device, observed={"lease_id": rental["id"]})
    assert marketplace.get_rental(rental["id"])["ssh_host_key"] == newer


def test_a_key_for_another_or_an_ended_lease_is_not_stored(marketplace):
    device = marketplace.online_device()
    other = marketplace.online_device()
    mine = marketplace.create_rental(device[0], renter="alice")
    theirs = marketplace.create_rental(other[0], renter="bob")
    # a device naming another device's rental (or none) stores nothing anywhere
    assert checkin(marketplace, device, theirs["id"], host_key()).status_code == 200
    assert checkin(marketplace, device, None, host_key()).status_code == 200
    assert marketplace.get_rental(theirs["id"])["ssh_host_key"] is None
    assert marketplace.get_rental(mine["id"])["ssh_host_key"] is None
    marketplace.end_rental(mine["id"])
    assert checkin(marketplace, device, mine["id"], host_key()).status_code == 200
    assert marketplace.get_rental(mine["id"])["ssh_host_key"] is None


def blob_key(blob):
    return "ssh-ed25519 " + base64.b64encode(blob).decode("ascii")


HEAD = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32)
GOOD = blob_key(HEAD + bytes(range(32)))     # fixed: pytest-xdist workers must collect the same ids
BAD_KEYS = [
    "",
    "ssh-ed25519",
    GOOD + " comment",                                         # one bare key, nothing else
    GOOD + "\n" + blob_key(HEAD + bytes(range(1, 33))),       # two keys
    "ssh-rsa " + GOOD.split()[1],                              # another type
    'command="sh" ' + GOOD,                                    # options
    GOOD.replace("ssh-ed25519 ", "ssh-ed25519  "),
    blob_key(HEAD + b"\0" * 31),                              # a key byte short
    blob_key(HEAD + b"\0" * 35),                              # bytes after the key
    blob_key(struct.pack(">I", 11) + b"ssh-ed25518" + struct.pack(">I", 32) + b"\0" * 32),
    blob_key(HEAD + b"\0" * 32)[:79],                        # truncated
    "ssh-ed25519 " + "A" * 4000,
    "ssh-ed25519 " + "\x1b[31m" + "A" * 63,
    GOOD[:-4] + "%%%%",
]


@pytest.mark.parametrize("bad", BAD_KEYS, ids=[f"bad{index}" for index in range(len(BAD_KEYS))])
def test_a_bad_key_is_refused_and_nothing_is_stored(shared_marketplace, shared_device, bad):
    response = shared_marketplace.request(
        "POST", f"/api/v1/devices/{shared_device[0]}/checkin", token=shared_device[1],
        json={"observed": {}, "host_public_key": bad})
    assert_error(response, 422)
    with pytest.raises(ValueError):
        check_host_public_key(bad)


@pytest.mark.parametrize("bad", [42, True, ["ssh-ed25519 x"], {"key": GOOD}])
def test_a_key_of_another_json_type_is_refused(shared_marketplace, shared_device, bad):
    response = shared_marketplace.request(
        "POST", f"/api/v1/devices/{shared_device[0]}/checkin", token=shared_device[1],
        json={"observed": {}, "host_public_key": bad})
    assert_error(response, 422)


def test_validation_and_fingerprint_match_openssh(tmp_path):
    key = host_key()
    assert check_host_public_key("  " + key + "\n") == key
    assert host_key_fingerprint(key) == ssh_keygen_fingerprint(key, tmp_path)
    assert host_key_fingerprint(None) is None
