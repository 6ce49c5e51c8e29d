"""Web hosting: web ports, lease hostnames, the web block, and the gateway's route listing."""
import base64
import datetime as dt
import json
import re
import time

import pytest
from sqlalchemy.exc import IntegrityError

from tests.fixtures.server import DEFAULT_FACTS, SERVER_DIR, Marketplace, ed25519_public_key, new_database_url
from tests.server.helpers import assert_error, parse_time

DOMAIN = "web.test"
HOSTNAME_RE = re.compile(r"^(?P<label>[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)\.web\.test$")
SUFFIX_RE = re.compile(r"-[a-z0-9]{6}$")
ROUTE_KEYS = {"hostname", "port", "device_id", "lease_id", "expires_at"}


@pytest.fixture(scope="module")
def web_marketplace(tmp_path_factory):
    """One web-hosting server for the read-mostly tests of this module."""
    server = Marketplace(tmp_path_factory.mktemp("web-marketplace"), web_domain=DOMAIN).start()
    yield server
    server.stop()
    server.assert_no_server_errors()


@pytest.fixture
def restarted(request):
    """(server, **options) -> the same data directory served again with other options."""
    def restart(server, **options):
        server.stop()
        again = Marketplace(server.data_dir, database=server.database_url, **options).start()
        request.addfinalizer(again.stop)
        return again
    return restart


def cursor_of(text):
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def assert_unique_column(server, statement, **params):
    """The database itself refuses a duplicate (a unique constraint, not only the allocation code)."""
    with pytest.raises(IntegrityError, match="(?i)unique"):
        server.sql(statement, **params)


def test_web_ports_are_unique_and_stable(marketplace_factory):
    server = marketplace_factory(web_domain=DOMAIN, web_port_range="30500-30509")
    devices = [server.create_device(f"pi-web-{i}") for i in range(3)]
    tunnels = [server.register_device(*device)["tunnel"] for device in devices]
    assert [t["web_remote_port"] for t in tunnels] == [30500, 30501, 30502]
    assert [t["remote_port"] for t in tunnels] == [20000, 20001, 20002]
    for device, tunnel in zip(devices, tunnels):
        assert server.register_device(*device)["tunnel"] == tunnel                 # re-registration keeps both
        assert server.request("GET", f"/api/v1/devices/{device[0]}").json()["tunnel"] == tunnel
    assert_unique_column(server, "UPDATE devices SET web_remote_port = 30500 WHERE web_remote_port = 30501")


def test_web_port_range_exhausted_and_freed_by_delete(marketplace_factory):
    server = marketplace_factory(web_domain=DOMAIN, web_port_range="30500-30501", port_quarantine=0)
    devices = [server.create_device(f"pi-{i}") for i in range(3)]
    assert [server.register_device(*d)["tunnel"]["web_remote_port"] for d in devices[:2]] == [30500, 30501]
    body = {"facts": DEFAULT_FACTS, "tunnel_public_key": ed25519_public_key()}
    full = server.request("POST", f"/api/v1/devices/{devices[2][0]}/register", token=devices[2][1], json=body)
    assert "30500-30501" in assert_error(full, 503, "web_port_range_exhausted")["detail"]
    refused = server.request("GET", f"/api/v1/devices/{devices[2][0]}").json()
    assert refused["registered"] is False and refused["tunnel"] is None           # nothing half-done
    assert server.request("DELETE", f"/api/v1/devices/{devices[0][0]}").status_code == 204
    assert server.register_device(*devices[2])["tunnel"]["web_remote_port"] == 30500      # lowest free


def test_devices_registered_before_web_hosting_get_a_web_port_when_it_is_turned_on(
        marketplace_factory, restarted):
    """Their agents do not register again while nothing changed: the server gives them one at start."""
    plain = marketplace_factory()
    early = [plain.online_device(f"pi-early-{index}") for index in range(3)]
    unregistered, dummy = plain.create_device("pi-never-registered")
    assert plain.register_device(*early[0])["tunnel"]["web_remote_port"] is None

    web = restarted(plain, web_domain=DOMAIN)
    ports = [web.request("GET", f"/api/v1/devices/{device_id}").json()["tunnel"]["web_remote_port"]
             for device_id, dummy in early]
    assert sorted(ports) == [30000, 30001, 30002]
    assert web.request("GET", f"/api/v1/devices/{unregistered}").json()["tunnel"] is None
    device_id, token = early[0]
    web.checkin(device_id, token)
    rental = web.create_rental(device_id, renter="eve")
    assert HOSTNAME_RE.fullmatch(rental["web"]["hostname"]) and rental["tunnel"]["web_remote_port"] in ports
    assert [route["lease_id"] for route in web.routes()["items"]] == [rental["id"]]
    assert web.register_device(device_id, token)["tunnel"]["web_remote_port"] == ports[0]   # stable

    off = restarted(web)                                                  # web hosting off again
    assert off.register_device(device_id, token)["tunnel"]["web_remote_port"] is None
    assert off.get_rental(rental["id"])["web"] is None and off.checkin(device_id, token)["lease"]["web"] is None
    assert off.routes() == {"items": [], "next_cursor": None}


def test_hostnames_have_the_label_shape_and_are_unique(web_marketplace):
    server = web_marketplace
    device_id, dummy = server.online_device()
    renters = ["alice"] * 40 + ["bob_the_builder", "_lead", "trail_", "a__b", "x--y", "_", "z" + "9" * 31]
    expected = {"alice": "alice", "bob_the_builder": "bob-the-builder", "_lead": "lead", "trail_": "trail",
                "a__b": "a-b", "x--y": "x-y", "_": "renter", "z" + "9" * 31: "z" + "9" * 31}
    hostnames = []
    for renter in renters:
        rental = server.create_rental(device_id, renter=renter)
        hostname = rental["web"]["hostname"]
        label = HOSTNAME_RE.fullmatch(hostname)["label"]
        assert SUFFIX_RE.search(label) and label[:-7] == expected[renter], (renter, hostname)
        assert "--" not in label and len(label) <= 63
        assert rental["web"]["url"] == f"https://{hostname}/"
        hostnames.append(hostname)
        server.end_rental(rental["id"])
    assert len(set(hostnames)) == len(hostnames)                          # unique, ended rentals included
    assert_unique_column(server, "UPDATE rentals SET web_hostname = :new WHERE web_hostname = :old",
                         new=hostnames[0], old=hostnames[1])


def test_web_block_in_checkin_and_rental_answers(marketplace_factory):
    server = marketplace_factory(web_domain="p2pvps.localhost", web_scheme="http", web_port_range="30100-30199")
    device_id, token = server.online_device()
    rental = server.create_rental(device_id, renter="carol")
    hostname = rental["web"]["hostname"]
    assert re.fullmatch(r"carol-[a-z0-9]{6}\.p2pvps\.localhost", hostname)
    web = {"hostname": hostname, "url": f"http://{hostname}/"}
    assert rental["web"] == web
    assert rental["tunnel"] == {"host": "127.0.0.1", "remote_port": 20000, "web_remote_port": 30100}
    lease = server.checkin(device_id, token)["lease"]
    assert lease["id"] == rental["id"] and lease["web"] == web
    assert server.get_rental(rental["id"]) == rental
    assert server.patch_rental(rental["id"], limits={"pids": 100})["web"] == web
    assert server.end_rental(rental["id"])["web"] == web                  # the name stays with the rental
    assert server.checkin(device_id, token)["lease"] is None


def test_web_is_null_when_web_hosting_is_off(shared_marketplace):
    server = shared_marketplace
    device_id, token = server.online_device()
    assert server.register_device(device_id, token)["tunnel"]["web_remote_port"] is None
    rental = server.create_rental(device_id)
    assert rental["web"] is None and rental["tunnel"]["web_remote_port"] is None
    assert server.checkin(device_id, token)["lease"]["web"] is None
    assert server.routes() == {"items": [], "next_cursor": None}
    assert server.routes(token=server.operator_token) == {"items": [], "next_cursor": None}


def test_routes_page_through_250_leases(marketplace_factory):
    server = marketplace_factory(web_domain=DOMAIN)
    leases = {}
    for i in range(250):
        device_id, dummy = server.online_device(f"pi-{i:03d}")
        rental = server.create_rental(device_id, renter=f"r{i % 7}")
        leases[rental["web"]["hostname"]] = (device_id, rental)
    devices = server.request("GET", "/api/v1/devices", params={"limit": 500}).json()["items"]
    ports = {device["id"]: device["tunnel"]["web_remote_port"] for device in devices}

    pages, cursor = [], None
    while True:
        page = server.routes(limit=7, cursor=cursor)
        assert set(page) == {"items", "next_cursor"}
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [7] * 35 + [5]
    seen = [item["hostname"] for page in pages for item in page]
    assert seen == sorted(leases) and len(set(seen)) == 250              # each hostname exactly once, ordered
    for item in (item for page in pages for item in page):
        device_id, rental = leases[item["hostname"]]
        assert set(item) == ROUTE_KEYS
        assert item == {"hostname": rental["web"]["hostname"], "port": ports[device_id], "device_id": device_id,
                        "lease_id": rental["id"], "expires_at": rental["expires_at"]}
    assert len(set(ports.values())) == 250

    whole = server.routes()                                               # default limit 500: one page
    assert whole["next_cursor"] is None and [i["hostname"] for i in whole["items"]] == seen
    exact = server.routes(limit=250)                                      # no empty page after a full one
    assert exact["next_cursor"] is None and len(exact["items"]) == 250
    assert server.routes(token=server.operator_token, limit=1000) == whole
    assert server.all_routes(limit=100) == whole["items"]


def test_ended_expired_and_deleted_leases_are_not_routes(web_marketplace):
    server = web_marketplace
    live, ended, expiring, deleted = (server.online_device(f"pi-{name}") for name in
                                      ("live", "ended", "expiring", "deleted"))
    keep = server.create_rental(live[0], renter="live")
    gone = server.create_rental(ended[0], renter="ended")
    server.end_rental(gone["id"])
    short = server.create_rental(expiring[0], renter="short", duration_s=10)
    removed = server.create_rental(deleted[0], renter="gone")
    assert server.request("DELETE", f"/api/v1/devices/{deleted[0]}").status_code == 204
    mine = {keep["id"], gone["id"], short["id"], removed["id"]}

    def routed():
        return {route["lease_id"] for route in server.all_routes()} & mine

    assert routed() == {keep["id"], short["id"]}
    expires = parse_time(short["expires_at"])
    while dt.datetime.now(dt.UTC) < expires + dt.timedelta(seconds=0.3):
        time.sleep(0.2)
    assert routed() == {keep["id"]}
    server.end_rental(keep["id"])
    assert routed() == set()


def test_routes_auth(marketplace_factory):
    gateway_token = "gateway-token-from-env-0123456789"
    server = marketplace_factory(web_domain=DOMAIN, gateway_token=gateway_token)
    assert server.gateway_token == gateway_token and not (server.data_dir / "gateway_token").exists()
    device_id, device_token = server.online_device()
    server.create_rental(device_id)
    assert len(server.routes()["items"]) == 1
    assert server.routes(token=server.operator_token) == server.routes()
    assert_error(server.request("GET", "/api/v1/routes", token=None), 401, "unauthorized")
    assert_error(server.request("GET", "/api/v1/routes", token="not-a-token-0123456789"), 401, "unauthorized")
    forbidden = server.request("GET", "/api/v1/routes", token=device_token)
    assert_error(forbidden, 403, "forbidden")
    assert device_token not in forbidden.text
    for path in ("/api/v1/devices", f"/api/v1/devices/{device_id}"):       # the gateway can list routes only
        assert_error(server.request("GET", path, token=gateway_token), 403, "forbidden")


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "limit=1.5", "limit=", "limit=true",
                                   "cursor=" + "A" * 401])
def test_bad_route_queries_are_422(web_marketplace, query):
    answer = web_marketplace.request("GET", "/api/v1/routes?" + query, token=web_marketplace.gateway_token)
    assert_error(answer, 422, "invalid_request")


@pytest.mark.parametrize("cursor", ["%%%", "not-a-cursor!", "____", "AA", cursor_of("Upper.Case"),
                                    cursor_of("-leading.dash"), cursor_of("a" * 254), cursor_of("\u00e9t\u00e9")])
def test_bad_route_cursor_is_400(web_marketplace, cursor):
    answer = web_marketplace.request("GET", "/api/v1/routes", params={"cursor": cursor},
                                     token=web_marketplace.gateway_token)
    assert_error(answer, 400, "invalid_cursor")


def test_route_cursor_past_the_end_is_an_empty_page(web_marketplace):
    assert web_marketplace.routes(cursor=cursor_of("zzzz.web.test")) == {"items": [], "next_cursor": None}


def test_openapi_documents_web_hosting(web_marketplace):
    spec = web_marketplace.request("GET", "/openapi.json", token=None).json()
    routes = spec["paths"]["/api/v1/routes"]["get"]
    assert routes["description"] and {p["name"] for p in routes["parameters"]} >= {"limit", "cursor"}
    schemas = spec["components"]["schemas"]

    def properties(name):
        return schemas[name]["properties"]

    assert routes["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/RoutePage")
    assert properties("Tunnel")["web_remote_port"]["description"]
    assert properties("Lease")["web"]["description"] and properties("Rental")["web"]["description"]
    assert properties("RentalTunnel")["web_remote_port"]["description"]
    assert properties("Facts")["disk_free_gb"]["description"]

    device_id, token = web_marketplace.online_device()                  # documented keys == answered keys
    registered = web_marketplace.register_device(device_id, token)
    rental = web_marketplace.create_rental(device_id, renter="olga")
    lease = web_marketplace.checkin(device_id, token)["lease"]
    route = next(r for r in web_marketplace.all_routes() if r["lease_id"] == rental["id"])
    for name, answer in (("Tunnel", registered["tunnel"]), ("Device", registered["device"]), ("Lease", lease),
                         ("Rental", rental), ("RentalTunnel", rental["tunnel"]), ("Web", rental["web"]),
                         ("Route", route)):
        assert set(properties(name)) == set(answer), name
    web_marketplace.end_rental(rental["id"])


def test_hostname_collision_is_retried(tmp_path, monkeypatch):
    """In process: a drawn hostname that exists already is drawn again (DB unique constraint + retry)."""
    monkeypatch.syspath_prepend(str(SERVER_DIR))
    from p2pvps_server import schemas
    from p2pvps_server.auth import hash_token
    from p2pvps_server.db import Database
    from p2pvps_server.errors import ApiError
    from p2pvps_server.service import MarketplaceService
    from p2pvps_server.settings import Settings

    database = Database(new_database_url(tmp_path / 'collide.db'))
    database.upgrade_schema()
    suffixes = iter(["aaaaaa", "aaaaaa", "aaaaaa", "bbbbbb"] + ["cccccc"] * 6)
    service = MarketplaceService(database, Settings(data_dir=tmp_path, web_domain=DOMAIN),
                                 label_suffix=lambda: next(suffixes))

    def rent():
        created = service.create_device(schemas.DeviceCreate(name="pi"))
        device_id = created["id"]
        registration = {"facts": DEFAULT_FACTS, "tunnel_public_key": ed25519_public_key()}
        service.register(device_id, schemas.RegisterRequest.model_validate_json(json.dumps(registration)))
        service.checkin(device_id, hash_token(created["device_token"]), None)
        body = schemas.RentalCreate(device_id=device_id, renter="alice", ssh_public_key=ed25519_public_key(),
                                    hours=1)
        return service.create_rental(body)

    try:
        assert rent()["web"]["hostname"] == "alice-aaaaaa.web.test"
        assert rent()["web"]["hostname"] == "alice-bbbbbb.web.test"          # two collisions, then a new name
        assert rent()["web"]["hostname"] == "alice-cccccc.web.test"
        with pytest.raises(ApiError) as refused:                             # every attempt collides
            rent()
        assert refused.value.status == 409 and refused.value.error == "rental_conflict"
    finally:
        database.dispose()
