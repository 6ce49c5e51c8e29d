"""Devices: create, get, list, register, check-in, delete; status and tunnel ports."""
import time

from tests.fixtures.server import DEFAULT_FACTS, ed25519_public_key
from tests.server.helpers import ISO_Z, assert_error, parse_time

DEVICE_KEYS = {"id", "name", "description", "owner", "status", "rentable", "registered", "facts", "unenforced_limits",
               "tunnel_public_key", "receipt_public_key", "tunnel", "last_checkin", "created_at", "registered_at", "lease"}


def test_create_and_get_device(marketplace):
    answer = marketplace.request("POST", "/api/v1/devices",
                                 json={"name": "pi-kitchen", "description": "shelf", "owner": "bob"})
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"id", "device_token", "device"}
    device = body["device"]
    assert set(device) == DEVICE_KEYS
    assert device["id"] == body["id"] and device["name"] == "pi-kitchen" and device["owner"] == "bob"
    assert device["status"] == "new" and device["registered"] is False and device["rentable"] is False
    assert device["tunnel"] is None and device["last_checkin"] is None and device["lease"] is None
    assert ISO_Z.fullmatch(device["created_at"])
    assert len(body["device_token"]) >= 32

    by_operator = marketplace.request("GET", f"/api/v1/devices/{body['id']}")
    by_device = marketplace.request("GET", f"/api/v1/devices/{body['id']}", token=body["device_token"])
    assert by_operator.status_code == by_device.status_code == 200
    assert by_operator.json() == by_device.json() == device
    assert "device_token" not in by_operator.text and body["device_token"] not in by_operator.text


def test_default_owner_and_description(marketplace):
    device_id, dummy = marketplace.create_device("pi-defaults")
    device = marketplace.request("GET", f"/api/v1/devices/{device_id}").json()
    assert device["owner"] == "default" and device["description"] == ""


def test_register_is_idempotent_and_assigns_a_port(marketplace):
    device_id, token = marketplace.create_device("pi-reg")
    key = ed25519_public_key("pi@reg")
    first = marketplace.register_device(device_id, token, key=key)
    tunnel = first["tunnel"]
    assert set(tunnel) == {"host", "port", "user", "host_key", "remote_port", "web_remote_port"}
    assert tunnel["remote_port"] == 20000 and tunnel["port"] == 22 and tunnel["user"] == "tunnel"
    assert tunnel["web_remote_port"] is None                                # web hosting is off
    assert tunnel["host"] == "127.0.0.1"
    device = first["device"]
    assert device["registered"] is True and device["facts"] == DEFAULT_FACTS
    assert device["tunnel_public_key"] == key and device["tunnel"] == tunnel
    assert device["status"] == "new" and device["rentable"] is False      # no check-in yet

    facts = dict(DEFAULT_FACTS, memory_mb=7812, extra_fact="ignored")
    again = marketplace.register_device(device_id, token, facts=facts, key=key)
    assert again["tunnel"] == tunnel
    assert again["device"]["facts"]["memory_mb"] == 7812 and "extra_fact" not in again["device"]["facts"]
    assert again["device"]["registered_at"] == device["registered_at"]

    other_id, other_token = marketplace.create_device("pi-reg-2")
    assert marketplace.register_device(other_id, other_token)["tunnel"]["remote_port"] == 20001


def test_checkin_makes_device_online_and_records_heartbeat(marketplace):
    device_id, token = marketplace.online_device()
    answer = marketplace.checkin(device_id, token, observed={"lease_id": None, "container": "absent"})
    assert set(answer) == {"lease", "lease_etag", "checkin_interval_s", "server_time", "receipts_acknowledged",
                           "receipts_refused"}
    assert answer["lease"] is None and answer["checkin_interval_s"] == 120
    server_time = parse_time(answer["server_time"])
    device = marketplace.request("GET", f"/api/v1/devices/{device_id}").json()
    assert device["status"] == "online" and device["rentable"] is True
    assert parse_time(device["last_checkin"]) == server_time


def test_checkin_without_body(marketplace):
    device_id, token = marketplace.create_device("pi-nobody")
    answer = marketplace.request("POST", f"/api/v1/devices/{device_id}/checkin", token=token)
    assert answer.status_code == 200 and answer.json()["lease"] is None


def test_server_options_reach_the_answers(marketplace_factory):
    host_key = ed25519_public_key("root@tunnel")
    server = marketplace_factory(checkin_interval=7, port_range="31000-31001", tunnel_host="tunnel.example.org",
                                 tunnel_port=2200, tunnel_user="fwd", tunnel_host_key=host_key)
    device_id, token = server.create_device("pi-options")
    tunnel = server.register_device(device_id, token)["tunnel"]
    assert tunnel == {"host": "tunnel.example.org", "port": 2200, "user": "fwd", "host_key": host_key,
                      "remote_port": 31000, "web_remote_port": None}
    assert server.checkin(device_id, token)["checkin_interval_s"] == 7


def test_port_range_exhausted_and_freed_by_delete(marketplace_factory):
    server = marketplace_factory(port_range="31000-31001", port_quarantine=0)
    devices = [server.create_device(f"pi-{i}") for i in range(3)]
    ports = [server.register_device(*devices[i])["tunnel"]["remote_port"] for i in range(2)]
    assert ports == [31000, 31001]
    body = {"facts": DEFAULT_FACTS, "tunnel_public_key": ed25519_public_key()}
    full = server.request("POST", f"/api/v1/devices/{devices[2][0]}/register", token=devices[2][1], json=body)
    assert_error(full, 503, "port_range_exhausted")
    assert server.request("DELETE", f"/api/v1/devices/{devices[0][0]}").status_code == 204
    assert server.register_device(*devices[2])["tunnel"]["remote_port"] == 31000     # lowest free


def test_a_deleted_devices_ports_are_quarantined(marketplace_factory):
    """The old device's tunnel may hold its ports until the tunnel server drops its key: a new device
    gets them only after --port-quarantine seconds."""
    server = marketplace_factory(port_range="31000-31001", web_domain="web.test", web_port_range="32000-32001",
                                 port_quarantine=3)
    old, other, new = (server.create_device(f"pi-{i}") for i in range(3))
    tunnel = server.register_device(*old)["tunnel"]
    assert (tunnel["remote_port"], tunnel["web_remote_port"]) == (31000, 32000)
    assert server.request("DELETE", f"/api/v1/devices/{old[0]}").status_code == 204
    released = time.monotonic()
    tunnel = server.register_device(*other)["tunnel"]
    assert (tunnel["remote_port"], tunnel["web_remote_port"]) == (31001, 32001)      # not the freed ones
    body = {"facts": DEFAULT_FACTS, "tunnel_public_key": ed25519_public_key()}
    held = server.request("POST", f"/api/v1/devices/{new[0]}/register", token=new[1], json=body)
    assert "quarantined" in assert_error(held, 503, "port_range_exhausted")["detail"]
    time.sleep(max(0.0, released + 3.2 - time.monotonic()))
    tunnel = server.register_device(*new)["tunnel"]
    assert (tunnel["remote_port"], tunnel["web_remote_port"]) == (31000, 32000)


def test_device_goes_offline(marketplace_factory):
    server = marketplace_factory(offline_after=1)
    device_id, token = server.online_device()
    assert server.request("GET", f"/api/v1/devices/{device_id}").json()["status"] == "online"
    time.sleep(1.6)
    device = server.request("GET", f"/api/v1/devices/{device_id}").json()
    assert device["status"] == "offline" and device["rentable"] is False
    server.checkin(device_id, token)
    assert server.request("GET", f"/api/v1/devices/{device_id}").json()["status"] == "online"


def test_delete_device(marketplace):
    device_id, token = marketplace.online_device()
    rental = marketplace.create_rental(device_id)
    assert marketplace.request("DELETE", f"/api/v1/devices/{device_id}", token=token).status_code == 204
    assert_error(marketplace.request("GET", f"/api/v1/devices/{device_id}"), 404, "not_found")
    assert_error(marketplace.request("DELETE", f"/api/v1/devices/{device_id}"), 404, "not_found")
    ended = marketplace.get_rental(rental["id"])
    assert ended["active"] is False and ended["ended_at"] is not None
    # the deleted device's token is dead
    assert_error(marketplace.request("POST", f"/api/v1/devices/{device_id}/checkin", token=token, json={}),
                 401, "unauthorized")


def test_unknown_ids_are_404(marketplace):
    for method, path in (("GET", "/api/v1/devices/no-such-device"), ("DELETE", "/api/v1/devices/no-such-device"),
                         ("GET", "/api/v1/rentals/no-such-rental"), ("DELETE", "/api/v1/rentals/no-such-rental")):
        assert_error(marketplace.request(method, path), 404, "not_found")
    patch = marketplace.request("PATCH", "/api/v1/rentals/no-such-rental", json={"limits": {"pids": 64}})
    assert_error(patch, 404, "not_found")
    rental = marketplace.request("POST", "/api/v1/rentals", json={
        "device_id": "no-such-device", "renter": "alice", "ssh_public_key": ed25519_public_key(), "hours": 1})
    assert_error(rental, 404, "not_found")
    assert_error(marketplace.request("GET", "/api/v1/nothing-here"), 404)


def test_openapi_is_served(marketplace):
    answer = marketplace.request("GET", "/openapi.json", token=None)
    assert answer.status_code == 200
    spec = answer.json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/devices"])
    assert {"get", "delete"} <= set(paths["/api/v1/devices/{device_id}"])
    assert "post" in paths["/api/v1/devices/{device_id}/register"]
    assert "post" in paths["/api/v1/devices/{device_id}/checkin"]
    assert "post" in paths["/api/v1/rentals"]
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/rentals/{rental_id}"])
    assert "post" in paths["/api/v1/rentals/{rental_id}/extend"]
