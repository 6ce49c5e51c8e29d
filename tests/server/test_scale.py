"""Paging through 1,000 devices and unique tunnel ports under 50 concurrent registrations."""
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.fixtures.server import DEFAULT_FACTS, ed25519_public_key

DEVICES = 1000
WORKERS = 8


def create_devices(server, count, owner_of=lambda i: "default"):
    """Create `count` devices through the API, a few keep-alive sessions in parallel -> [(id, token)]."""
    def worker(indices):
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {server.operator_token}"
            created = []
            for i in indices:
                answer = session.post(server.url + "/api/v1/devices", timeout=30,
                                      json={"name": f"bulk-{i:04d}", "owner": owner_of(i)})
                assert answer.status_code == 201, answer.text
                created.append((answer.json()["id"], answer.json()["device_token"]))
            return created
    with ThreadPoolExecutor(WORKERS) as pool:
        parts = pool.map(worker, [range(n, count, WORKERS) for n in range(WORKERS)])
    return [item for part in parts for item in part]


def all_pages(server, limit, **filters):
    pages, cursor = [], None
    while True:
        params = dict(filters, limit=limit, **({"cursor": cursor} if cursor else {}))
        answer = server.request("GET", "/api/v1/devices", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert set(page) == {"items", "next_cursor"}
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


def test_paging_through_1000_devices(marketplace):
    started = time.monotonic()
    created = create_devices(marketplace, DEVICES, owner_of=lambda i: "even" if i % 2 == 0 else "odd")
    created_s = time.monotonic() - started
    ids = {device_id for device_id, dummy in created}
    assert len(ids) == DEVICES

    pages = all_pages(marketplace, limit=137)
    seen = [item["id"] for page in pages for item in page]
    assert len(seen) == DEVICES and set(seen) == ids and seen == sorted(seen)     # stable order, no repeats
    assert [len(page) for page in pages] == [137] * 7 + [DEVICES - 7 * 137]

    assert sum(map(len, all_pages(marketplace, limit=500))) == DEVICES
    one_page = marketplace.request("GET", "/api/v1/devices", params={"limit": 500}).json()
    assert len(one_page["items"]) == 500 and one_page["next_cursor"]
    default = marketplace.request("GET", "/api/v1/devices").json()
    assert len(default["items"]) == 100

    even = [item for page in all_pages(marketplace, limit=250, owner="even") for item in page]
    assert len(even) == DEVICES // 2 and {item["owner"] for item in even} == {"even"}

    print(f"\nMEASURED create {DEVICES} devices: {created_s:.1f} s; paging total {time.monotonic() - started:.1f} s")


def test_filters(marketplace):
    amd, amd_token = marketplace.online_device("pi-amd")
    marketplace.register_device(amd, amd_token, facts=dict(DEFAULT_FACTS, architecture="amd64"))
    arm, dummy = marketplace.online_device("pi-arm")
    new, dummy = marketplace.create_device("pi-new", owner="zoe")
    rental = marketplace.create_rental(arm)

    def ids(**filters):
        answer = marketplace.request("GET", "/api/v1/devices", params=filters)
        assert answer.status_code == 200, answer.text
        return {item["id"] for item in answer.json()["items"]}

    assert ids(status="new") == {new}
    assert ids(status="online") == {amd, arm}
    assert ids(status="offline") == set()
    assert ids(owner="zoe") == {new}
    assert ids(architecture="amd64") == {amd}
    assert ids(architecture="arm64") == {arm}
    assert ids(rented="true") == {arm}
    assert ids(rented="false") == {amd, new}
    assert ids(rented="true", status="online", architecture="arm64") == {arm}
    marketplace.end_rental(rental["id"])
    assert ids(rented="true") == set()


def test_unique_ports_under_50_concurrent_registrations(marketplace_factory):
    server = marketplace_factory(port_range="25000-25049")
    devices = create_devices(server, 50)

    def register(device):
        device_id, token = device
        with requests.Session() as session:
            answer = session.post(f"{server.url}/api/v1/devices/{device_id}/register", timeout=60,
                                  headers={"Authorization": f"Bearer {token}"},
                                  json={"facts": DEFAULT_FACTS, "tunnel_public_key": ed25519_public_key()})
        assert answer.status_code == 200, answer.text
        return device_id, answer.json()["tunnel"]["remote_port"]

    with ThreadPoolExecutor(50) as pool:
        ports = dict(pool.map(register, devices))
    assert sorted(ports.values()) == list(range(25000, 25050))      # unique, lowest free, whole range

    with ThreadPoolExecutor(50) as pool:                             # again, concurrently: same ports
        again = dict(pool.map(register, devices))
    assert again == ports

    extra = server.create_device("pi-one-too-many")
    answer = server.request("POST", f"/api/v1/devices/{extra[0]}/register", token=extra[1],
                            json={"facts": DEFAULT_FACTS, "tunnel_public_key": ed25519_public_key()})
    assert answer.status_code == 503 and answer.json()["error"] == "port_range_exhausted"
