"""Authentication and authorisation: 401 without a valid token, 403 without the rights."""
import pytest

from tests.fixtures.server import DEFAULT_FACTS, ed25519_public_key
from tests.server.helpers import assert_error


@pytest.fixture(scope="module")
def two_devices(shared_marketplace):
    return shared_marketplace.online_device("pi-auth-a"), shared_marketplace.online_device("pi-auth-b")


def calls(device_id, rental_id="some-rental"):
    """(method, path, body) of every authenticated endpoint."""
    return [
        ("POST", "/api/v1/devices", {"name": "x"}),
        ("GET", "/api/v1/devices", None),
        ("GET", f"/api/v1/devices/{device_id}", None),
        ("DELETE", f"/api/v1/devices/{device_id}", None),
        ("POST", f"/api/v1/devices/{device_id}/register",
         {"facts": DEFAULT_FACTS, "tunnel_public_key": ed25519_public_key()}),
        ("POST", f"/api/v1/devices/{device_id}/checkin", {"observed": {}}),
        ("POST", "/api/v1/rentals", {"device_id": device_id, "renter": "alice",
                                     "ssh_public_key": ed25519_public_key(), "hours": 1}),
        ("GET", f"/api/v1/rentals/{rental_id}", None),
        ("PATCH", f"/api/v1/rentals/{rental_id}", {"limits": {"pids": 64}}),
        ("DELETE", f"/api/v1/rentals/{rental_id}", None),
        ("POST", f"/api/v1/rentals/{rental_id}/extend", {"renter": "alice", "expires_at": "2030-01-01T00:00:00Z"}),
        ("GET", "/api/v1/routes", None),
        ("GET", "/api/v1/tunnel-keys", None),
    ]


@pytest.mark.parametrize("token", [None, "", "wrong-token-0123456789", "x" * 600, "Bearer", "ünïcödé"])
def test_missing_or_wrong_token_is_401(shared_marketplace, two_devices, token):
    (device_id, dummy), dummy = two_devices
    for method, path, body in calls(device_id):
        kwargs = {} if body is None else {"json": body}
        if token is None:
            answer = shared_marketplace.request(method, path, token=None, **kwargs)
        else:
            header = f"Bearer {token}".encode()
            answer = shared_marketplace.request(method, path, token=None, headers={"Authorization": header},
                                                **kwargs)
        assert_error(answer, 401, "unauthorized")
        assert answer.headers.get("WWW-Authenticate") == "Bearer"
        if token:
            assert token not in answer.text


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "bearer", "Bearer  ", "Bearer a b"])
def test_malformed_authorization_header_is_401(shared_marketplace, header):
    answer = shared_marketplace.request("GET", "/api/v1/devices", token=None, headers={"Authorization": header})
    assert_error(answer, 401, "unauthorized")


def test_operator_token_in_another_scheme_is_401(shared_marketplace):
    header = "Token " + shared_marketplace.operator_token
    answer = shared_marketplace.request("GET", "/api/v1/devices", token=None, headers={"Authorization": header})
    assert_error(answer, 401)


def test_device_token_on_operator_endpoints_is_403(shared_marketplace, two_devices):
    (device_id, token), dummy = two_devices
    rental_id = "some-rental"
    operator_only = [c for c in calls(device_id, rental_id)
                     if c[1] in ("/api/v1/devices", "/api/v1/rentals") or "/rentals/" in c[1]]
    assert len(operator_only) == 7
    for method, path, body in operator_only:
        answer = shared_marketplace.request(method, path, token=token, **({} if body is None else {"json": body}))
        assert_error(answer, 403, "forbidden")


def test_device_token_on_another_device_is_403(shared_marketplace, two_devices):
    (a_id, a_token), (b_id, dummy) = two_devices
    for method, path, body in calls(b_id):
        if not path.startswith(f"/api/v1/devices/{b_id}"):
            continue
        answer = shared_marketplace.request(method, path, token=a_token, **({} if body is None else {"json": body}))
        assert_error(answer, 403, "forbidden")
        assert a_token not in answer.text
    # and on a device that does not exist: 403 as well (no probing of ids with a device token)
    answer = shared_marketplace.request("GET", "/api/v1/devices/no-such-device", token=a_token)
    assert_error(answer, 403, "forbidden")
    # B is untouched
    assert shared_marketplace.request("GET", f"/api/v1/devices/{b_id}").status_code == 200


def test_operator_cannot_act_as_a_device(shared_marketplace, two_devices):
    (device_id, dummy), dummy = two_devices
    for suffix, body in (("register", {"facts": DEFAULT_FACTS, "tunnel_public_key": ed25519_public_key()}),
                         ("checkin", {})):
        answer = shared_marketplace.request("POST", f"/api/v1/devices/{device_id}/{suffix}", json=body)
        assert_error(answer, 403, "forbidden")


def test_gateway_token_lists_routes_and_tunnel_keys_and_nothing_else(shared_marketplace, two_devices):
    (device_id, dummy), dummy = two_devices
    gateway = shared_marketplace.gateway_token
    assert gateway and gateway != shared_marketplace.operator_token
    for method, path, body in calls(device_id):
        answer = shared_marketplace.request(method, path, token=gateway, **({} if body is None else {"json": body}))
        if path == "/api/v1/routes":
            assert answer.status_code == 200 and answer.json() == {"items": [], "next_cursor": None}
        elif path == "/api/v1/tunnel-keys":
            assert answer.status_code == 200 and "next_cursor" in answer.json()
        else:
            assert_error(answer, 403, "forbidden")
            assert gateway not in answer.text
    assert shared_marketplace.request("GET", f"/api/v1/devices/{device_id}").status_code == 200     # not deleted


def test_device_token_works_for_its_own_device(shared_marketplace, two_devices):
    (device_id, token), dummy = two_devices
    assert shared_marketplace.request("GET", f"/api/v1/devices/{device_id}", token=token).status_code == 200
    assert shared_marketplace.checkin(device_id, token)["lease"] is None


def test_operator_token_from_environment(marketplace_factory):
    token = "env-operator-token-" + "9" * 20
    server = marketplace_factory(operator_token=token)
    assert server.operator_token == token
    assert server.request("GET", "/api/v1/devices").status_code == 200
    assert not (server.data_dir / "operator_token").exists()
