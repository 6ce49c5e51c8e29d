"""The tunnel server's list of device keys (GET /api/v1/tunnel-keys) and the tunnel key types."""
import subprocess

import pytest

from tests.fixtures.server import DEFAULT_FACTS, ed25519_public_key
from tests.server.helpers import assert_error


def rsa_public_key(folder):
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(folder / "rsa")], check=True)
    return (folder / "rsa.pub").read_text().strip()


def test_a_tunnel_key_must_be_a_type_the_tunnel_server_takes(marketplace_factory, tmp_path):
    server = marketplace_factory()
    device_id, token = server.create_device("pi-rsa")
    body = {"facts": DEFAULT_FACTS, "tunnel_public_key": rsa_public_key(tmp_path)}
    answer = server.request("POST", f"/api/v1/devices/{device_id}/register", token=token, json=body)
    assert_error(answer, 422)
    assert "tunnel key must be one of" in answer.text
    assert server.register_device(device_id, token)["tunnel"]["remote_port"]          # ed25519 is fine


def test_tunnel_keys_list_every_registered_device_and_only_those(marketplace_factory):
    server = marketplace_factory(web_domain="web.test", port_quarantine=0)
    registered = []
    for index in range(5):
        device_id, token = server.create_device(f"pi-tk-{index}")
        key = ed25519_public_key(f"tunnel@pi-{index}")
        tunnel = server.register_device(device_id, token, key=key)["tunnel"]
        registered.append({"device_id": device_id, "key": key, "port": tunnel["remote_port"],
                           "web_port": tunnel["web_remote_port"]})
    server.create_device("pi-never-registered")
    gone = registered.pop(2)
    assert server.request("DELETE", f"/api/v1/devices/{gone['device_id']}").status_code == 204

    items, cursor, pages = [], None, 0
    while True:
        query = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        answer = server.request("GET", "/api/v1/tunnel-keys", token=server.gateway_token, params=query)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 2
    assert items == sorted(registered, key=lambda item: item["device_id"])
    assert all(item["web_port"] is not None for item in items)


def test_without_web_hosting_tunnel_keys_have_no_web_port(marketplace_factory):
    server = marketplace_factory()
    server.register_device(*server.create_device("pi-noweb"))
    items = server.request("GET", "/api/v1/tunnel-keys").json()["items"]     # the operator's token works too
    assert [item["web_port"] for item in items] == [None]


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 1001}, {"cursor": "x" * 300}])
def test_bad_tunnel_key_queries_are_422(shared_marketplace, query):
    assert_error(shared_marketplace.request("GET", "/api/v1/tunnel-keys", params=query), 422)


def test_a_device_token_cannot_list_tunnel_keys(shared_marketplace, shared_device):
    answer = shared_marketplace.request("GET", "/api/v1/tunnel-keys", token=shared_device[1])
    assert_error(answer, 403, "forbidden")
