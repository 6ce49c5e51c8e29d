"""Lease limits within the device: memory, CPUs and disk against the registered facts minus reserves."""
import secrets

import pytest

from tests.fixtures.server import DEFAULT_FACTS, ed25519_public_key
from tests.server.helpers import assert_error

# DEFAULT_FACTS offer 3793 - 256 = 3537 MB, 4 CPUs and 29.1 - 1 = 28.1 GB with the default reserves.
MEMORY_OFFER = 3537


def refused(server, device_id, limits):
    body = {"device_id": device_id, "renter": "alice", "ssh_public_key": ed25519_public_key(), "hours": 1,
            "limits": limits}
    return assert_error(server.request("POST", "/api/v1/rentals", json=body), 409, "limits_exceed_device")["detail"]


def fits(server, device_id, limits):
    rental = server.create_rental(device_id, limits=limits)
    server.end_rental(rental["id"])
    return rental["limits"]


@pytest.fixture
def server(shared_marketplace):
    """The module's server (default reserves)."""
    return shared_marketplace


@pytest.fixture
def device(server):
    """A fresh online device of its own."""
    return server.online_device()


def test_default_limits_fit_the_default_facts(server, device):
    rental = server.create_rental(device[0])
    assert rental["limits"] == {"memory_mb": 512, "cpus": 1.0, "pids": 256, "disk_gb": 2}


def test_memory_within_the_reserve(server, device):
    assert fits(server, device[0], {"memory_mb": MEMORY_OFFER})["memory_mb"] == MEMORY_OFFER
    detail = refused(server, device[0], {"memory_mb": MEMORY_OFFER + 1})
    assert detail == ("memory_mb 3538 is more than the device offers: 3537 MB "
                      "(3793 MB minus a 256 MB reserve)")
    assert server.checkin(*device)["lease"] is None                   # nothing was created


def test_cpus_within_the_cpu_count(server, device):
    assert fits(server, device[0], {"cpus": 4})["cpus"] == 4.0
    assert refused(server, device[0], {"cpus": 4.1}) == "cpus 4.1 is more than the device offers: 4 CPUs"


def test_disk_within_disk_gb_without_disk_free_gb(server, device):
    assert fits(server, device[0], {"disk_gb": 28})["disk_gb"] == 28
    assert refused(server, device[0], {"disk_gb": 29}) == \
        "disk_gb 29 is more than the device offers: 28.1 GB (29.1 GB disk minus a 1 GB reserve)"


def test_disk_within_disk_free_gb(server, device):
    facts = dict(DEFAULT_FACTS, disk_free_gb=10.5)
    assert server.register_device(*device, facts=facts)["device"]["facts"] == facts
    assert fits(server, device[0], {"disk_gb": 9})["disk_gb"] == 9
    assert refused(server, device[0], {"disk_gb": 10}) == \
        "disk_gb 10 is more than the device offers: 9.5 GB (10.5 GB free minus a 1 GB reserve)"
    server.register_device(*device, facts=dict(DEFAULT_FACTS, disk_free_gb=0))
    assert "0 GB" in refused(server, device[0], {"disk_gb": 1})
    assert "disk_gb" in refused(server, device[0], {})                # the default 2 GB does not fit


def test_the_free_disk_of_the_last_checkin_wins_over_the_registered_one(server, device):
    """Free space drifts and devices do not register again for it: every check-in reports it."""
    server.register_device(*device, facts=dict(DEFAULT_FACTS, disk_free_gb=20))
    server.checkin(*device, observed={"disk_free_gb": 3})
    assert fits(server, device[0], {"disk_gb": 2})["disk_gb"] == 2
    assert refused(server, device[0], {"disk_gb": 3}) == \
        "disk_gb 3 is more than the device offers: 2 GB (3 GB free minus a 1 GB reserve)"
    for junk in (True, -1, "40", None):   # not a number: the registered fact counts
        server.checkin(*device, observed={"disk_free_gb": junk})
        assert "19 GB (20 GB free" in refused(server, device[0], {"disk_gb": 30})


def test_small_device_refuses_the_default_memory(server, device):
    server.register_device(*device, facts=dict(DEFAULT_FACTS, memory_mb=700))
    assert "memory_mb 512" in refused(server, device[0], {})
    assert fits(server, device[0], {"memory_mb": 444})["memory_mb"] == 444


def test_reserves_are_options(marketplace_factory):
    server = marketplace_factory(memory_reserve_mb=0, disk_reserve_gb=0.5)
    device_id, dummy = server.online_device()
    assert fits(server, device_id, {"memory_mb": 3793, "disk_gb": 28})["memory_mb"] == 3793
    assert "(3793 MB minus a 0 MB reserve)" in refused(server, device_id, {"memory_mb": 3794})
    assert "28.6 GB (29.1 GB disk minus a 0.5 GB reserve)" in refused(server, device_id, {"disk_gb": 29})


def test_patch_limits_within_the_device(server, device):
    rental = server.create_rental(device[0])
    path = f"/api/v1/rentals/{rental['id']}"
    for limits, name in (({"memory_mb": MEMORY_OFFER + 1}, "memory_mb"), ({"cpus": 5}, "cpus"),
                         ({"disk_gb": 29, "pids": 64}, "disk_gb")):
        detail = assert_error(server.request("PATCH", path, json={"limits": limits}), 409,
                              "limits_exceed_device")["detail"]
        assert detail.startswith(name + " ")
    assert server.get_rental(rental["id"])["limits"] == rental["limits"]          # unchanged
    assert server.patch_rental(rental["id"], limits={"memory_mb": MEMORY_OFFER, "cpus": 4, "disk_gb": 28})

    # Facts shrink on a new registration: only the limits a PATCH names are checked again.
    server.register_device(*device, facts=dict(DEFAULT_FACTS, memory_mb=1024))
    assert server.patch_rental(rental["id"], limits={"pids": 100})["limits"]["memory_mb"] == MEMORY_OFFER
    assert server.patch_rental(rental["id"], ssh_public_keys=[ed25519_public_key()])
    detail = assert_error(server.request("PATCH", path, json={"limits": {"memory_mb": 1000}}), 409,
                          "limits_exceed_device")["detail"]
    assert "768 MB" in detail
    assert server.patch_rental(rental["id"], limits={"memory_mb": 768})["limits"]["memory_mb"] == 768


@pytest.mark.parametrize("value", [-1, -0.1, "10", True, [1], {"gb": 1}, 1_000_001])
def test_bad_disk_free_gb(shared_marketplace, shared_device, value):
    device_id, token = shared_device
    body = {"facts": dict(DEFAULT_FACTS, disk_free_gb=value), "tunnel_public_key": ed25519_public_key()}
    answer = shared_marketplace.request("POST", f"/api/v1/devices/{device_id}/register", token=token, json=body)
    assert "facts.disk_free_gb" in assert_error(answer, 422, "invalid_request")["detail"]


def test_disk_free_gb_is_optional(shared_marketplace, shared_device):
    for facts in (DEFAULT_FACTS, dict(DEFAULT_FACTS, disk_free_gb=None)):
        registered = shared_marketplace.register_device(*shared_device, facts=facts)
        assert registered["device"]["facts"] == DEFAULT_FACTS
    with_free = dict(DEFAULT_FACTS, disk_free_gb=12)
    assert shared_marketplace.register_device(*shared_device, facts=with_free)["device"]["facts"] == with_free
    shared_marketplace.register_device(*shared_device)                    # back to the defaults for others


# ------------------------------------------------------------------ what the device can enforce (issue 15)

ENFORCED = {"memory": True, "swap": True, "cpu": True, "pids": True, "disk": True, "cgroup_version": "2",
            "cgroup_driver": "systemd", "storage_driver": "overlay2", "swap_on_sd_card": False, "problems": []}
MEMORY_OFF = dict(ENFORCED, memory=False, swap=False, cgroup_version="1", swap_on_sd_card=True, problems=[
    "memory: Docker reports no memory limit support (memory cgroup disabled). Fix: add "
    "\"cgroup_enable=memory cgroup_memory=1\" to /boot/firmware/cmdline.txt, then reboot."])


def registered_with(server, enforcement):
    device_id, token = server.create_device("pi-" + secrets.token_hex(4))
    server.register_device(device_id, token, facts=dict(DEFAULT_FACTS, enforcement=enforcement))
    server.checkin(device_id, token)
    return device_id, token


def rent(server, device_id):
    body = {"device_id": device_id, "renter": "alice", "ssh_public_key": ed25519_public_key(), "hours": 1}
    return server.request("POST", "/api/v1/rentals", json=body)


def test_a_device_that_cannot_enforce_memory_or_pids_is_not_rented_out(server):
    for enforcement, named in ((MEMORY_OFF, "memory"), (dict(ENFORCED, pids=False), "pids"),
                               (dict(ENFORCED, memory=False, pids=False), "memory and pids")):
        device_id, token = registered_with(server, enforcement)
        detail = assert_error(rent(server, device_id), 409, "device_cannot_enforce_limits")["detail"]
        assert detail.startswith(f"the device reports that it cannot enforce {named} limits")
        assert server.checkin(device_id, token)["lease"] is None          # nothing was created
        view = server.request("GET", f"/api/v1/devices/{device_id}").json()
        assert view["rentable"] is False
        assert view["facts"]["enforcement"]["problems"] == enforcement["problems"]
    assert view["unenforced_limits"] == ["memory", "pids"]


def test_enforced_limits_and_devices_that_never_said_are_rentable(server):
    device_id = registered_with(server, dict(ENFORCED, swap=False, cpu=False))[0]
    view = server.request("GET", f"/api/v1/devices/{device_id}").json()
    assert view["rentable"] is True and view["unenforced_limits"] == ["swap", "cpu"]
    assert view["facts"]["enforcement"]["storage_driver"] == "overlay2"
    assert rent(server, device_id).status_code == 201
    old_id = server.online_device()[0]                                 # registered without the fact
    old = server.request("GET", f"/api/v1/devices/{old_id}").json()
    assert "enforcement" not in old["facts"] and old["unenforced_limits"] == [] and old["rentable"] is True
    assert rent(server, old_id).status_code == 201


def test_a_fixed_device_registers_again_and_is_rentable(server):
    device_id, token = registered_with(server, MEMORY_OFF)
    server.register_device(device_id, token, facts=dict(DEFAULT_FACTS, enforcement=ENFORCED))
    assert rent(server, device_id).status_code == 201


@pytest.mark.parametrize("enforcement", [{"memory": "no"}, {"memory": 0}, {"problems": "x"}, {"problems": ["a\nb"]},
                                         {"problems": ["x" * 501]}, {"problems": ["p"] * 17},
                                         {"storage_driver": ""}, "yes"])
def test_a_malformed_enforcement_fact_is_refused(server, enforcement):
    device_id, token = server.create_device("pi-bad-enforcement")
    answer = server.request("POST", f"/api/v1/devices/{device_id}/register", token=token,
                            json={"facts": dict(DEFAULT_FACTS, enforcement=enforcement),
                                  "tunnel_public_key": ed25519_public_key("tunnel@x")})
    assert answer.status_code == 422, answer.text
