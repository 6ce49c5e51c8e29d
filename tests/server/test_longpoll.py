"""Long-poll check-ins (?wait= with lease_etag): held until the device's lease changes, on a real server."""
import concurrent.futures
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures.server import PYTHON, ROOT, SERVER_DIR, database_engine, ed25519_public_key
from tests.server.helpers import assert_error, parse_time

# Slack for a loaded 2-core CI machine; a held check-in's waits are several times longer.
EARLY_S = 2.0


def held_checkin(server, device, wait, etag, observed=None, timeout=None):
    """(seconds, answer) of one check-in with ?wait=`wait` and the device's lease_etag."""
    device_id, token = device
    body = {"observed": observed or {}}
    if etag is not None:
        body["lease_etag"] = etag
    start = time.monotonic()
    response = server.request("POST", f"/api/v1/devices/{device_id}/checkin", token=token, json=body,
                              params={"wait": wait}, timeout=timeout or wait + 30)
    assert response.status_code == 200, response.text
    return time.monotonic() - start, response.json()


class Background:
    """A held check-in in a thread, so that the test can change the lease meanwhile."""

    def __init__(self, server, device, wait, etag):
        self.result = None
        self.thread = threading.Thread(target=self._run, args=(server, device, wait, etag), daemon=True)
        self.thread.start()

    def _run(self, *args):
        self.result = held_checkin(*args)

    def join(self, timeout=60):
        self.thread.join(timeout)
        assert self.result is not None, "the held check-in did not finish"
        return self.result


@pytest.fixture
def marketplace(shared_marketplace):
    """The module's one server: each test uses devices of its own, and a server start costs some 2 s of CI."""
    return shared_marketplace


def waiting_until_held():
    """Give a check-in started in the background the time to reach the server and be held."""
    time.sleep(0.5)


def test_every_answer_has_the_lease_etag_and_it_follows_the_lease(marketplace):
    device = marketplace.online_device()
    free = marketplace.checkin(*device)
    assert set(free) == {"lease", "lease_etag", "checkin_interval_s", "server_time", "receipts_acknowledged",
                         "receipts_refused"}
    assert free["lease"] is None and isinstance(free["lease_etag"], str) and 16 <= len(free["lease_etag"]) <= 64
    assert marketplace.checkin(*device)["lease_etag"] == free["lease_etag"]
    rental = marketplace.create_rental(device[0])
    leased = marketplace.checkin(*device)
    assert leased["lease"]["id"] == rental["id"] and leased["lease_etag"] != free["lease_etag"]
    marketplace.patch_rental(rental["id"], limits={"memory_mb": 256})
    assert marketplace.checkin(*device)["lease_etag"] not in (leased["lease_etag"], free["lease_etag"])
    marketplace.end_rental(rental["id"])
    assert marketplace.checkin(*device)["lease_etag"] == free["lease_etag"]


def test_without_wait_or_etag_the_answer_comes_at_once(marketplace):
    device = marketplace.online_device()
    etag = marketplace.checkin(*device)["lease_etag"]
    for wait, sent in ((0, etag), (30, None), (30, "a-stale-etag")):
        took, answer = held_checkin(marketplace, device, wait, sent)
        assert took < EARLY_S, (wait, sent, took)
        assert answer["lease"] is None and answer["lease_etag"] == etag


def test_a_stale_etag_is_answered_at_once_with_the_new_lease(marketplace):
    device = marketplace.online_device()
    free_etag = marketplace.checkin(*device)["lease_etag"]
    rental = marketplace.create_rental(device[0])
    took, answer = held_checkin(marketplace, device, 60, free_etag)
    assert took < EARLY_S
    assert answer["lease"]["id"] == rental["id"] and answer["lease_etag"] != free_etag


def test_the_wait_passes_with_the_same_answer_and_a_fresh_time(marketplace):
    device = marketplace.online_device()
    before = marketplace.checkin(*device)
    took, answer = held_checkin(marketplace, device, 3, before["lease_etag"], observed={"container": "absent"})
    assert 2.9 <= took < 3 + EARLY_S
    assert answer["lease"] is None and answer["lease_etag"] == before["lease_etag"]
    held_for = (parse_time(answer["server_time"]) - parse_time(before["server_time"])).total_seconds()
    assert held_for >= 2.9, "server_time must be the time of the answer, not of the arrival"
    # The heartbeat is recorded at arrival (the device was online all along).
    device_view = marketplace.request("GET", f"/api/v1/devices/{device[0]}").json()
    assert (parse_time(answer["server_time"]) - parse_time(device_view["last_checkin"])).total_seconds() >= 2.9


@pytest.mark.parametrize("change", ["create", "end", "patch_keys", "patch_limits", "delete_device"])
def test_a_lease_change_answers_a_held_checkin_early(marketplace, change):
    device = marketplace.online_device()
    rental = None if change == "create" else marketplace.create_rental(device[0])
    before = marketplace.checkin(*device)
    held = Background(marketplace, device, 60, before["lease_etag"])
    waiting_until_held()
    if change == "create":
        rental = marketplace.create_rental(device[0])
    elif change == "end":
        marketplace.end_rental(rental["id"])
    elif change == "patch_keys":
        marketplace.patch_rental(rental["id"], ssh_public_keys=[ed25519_public_key("new@laptop")])
    elif change == "patch_limits":
        marketplace.patch_rental(rental["id"], limits={"cpus": 0.5})
    else:
        assert marketplace.request("DELETE", f"/api/v1/devices/{device[0]}").status_code == 204
    took, answer = held.join()
    assert took < 0.5 + EARLY_S + 1, took
    assert answer["lease_etag"] != before["lease_etag"]
    if change == "create":
        assert answer["lease"]["id"] == rental["id"]
    elif change in ("end", "delete_device"):
        assert answer["lease"] is None
    elif change == "patch_keys":
        assert answer["lease"]["ssh_authorized_keys"][0].endswith("new@laptop")
    else:
        assert answer["lease"]["limits"]["cpus"] == 0.5


def test_a_patch_that_changes_nothing_keeps_the_checkin_held(marketplace):
    device = marketplace.online_device()
    rental = marketplace.create_rental(device[0], limits={"cpus": 1.0})
    before = marketplace.checkin(*device)
    held = Background(marketplace, device, 3, before["lease_etag"])
    waiting_until_held()
    marketplace.patch_rental(rental["id"], limits={"cpus": 1.0})
    took, answer = held.join()
    assert took >= 2.9 and answer["lease_etag"] == before["lease_etag"]


def test_the_wait_ends_when_the_lease_expires(marketplace):
    device = marketplace.online_device()
    rental = marketplace.create_rental(device[0], duration_s=10)
    before = marketplace.checkin(*device)
    expires_in = (parse_time(rental["expires_at"]) - parse_time(before["server_time"])).total_seconds()
    took, answer = held_checkin(marketplace, device, 60, before["lease_etag"])
    assert answer["lease"] is None and answer["lease_etag"] != before["lease_etag"]
    assert expires_in - 0.5 <= took <= expires_in + EARLY_S, (took, expires_in)
    assert parse_time(answer["server_time"]) >= parse_time(rental["expires_at"])


def test_the_server_caps_the_wait(marketplace_factory):
    server = marketplace_factory(max_checkin_wait=1)
    device = server.online_device()
    took, answer = held_checkin(server, device, 60, server.checkin(*device)["lease_etag"])
    assert 0.9 <= took < 1 + EARLY_S
    off = marketplace_factory(max_checkin_wait=0)
    device = off.online_device()
    took, dummy = held_checkin(off, device, 60, off.checkin(*device)["lease_etag"])
    assert took < EARLY_S


@pytest.mark.parametrize("wait", ["-1", "601", "1.5", "abc", "", "true", "1e3"])
def test_bad_wait_values_are_422(shared_marketplace, shared_device, wait):
    device_id, token = shared_device
    response = shared_marketplace.request("POST", f"/api/v1/devices/{device_id}/checkin?wait={wait}", token=token,
                                          json={"lease_etag": "x"})
    assert_error(response, 422, "invalid_request")


@pytest.mark.parametrize("etag", [5, True, ["x"], {"a": 1}, "x" * 65, "with space", "tab\there"])
def test_bad_lease_etags_are_422(shared_marketplace, shared_device, etag):
    device_id, token = shared_device
    response = shared_marketplace.request("POST", f"/api/v1/devices/{device_id}/checkin?wait=1", token=token,
                                          json={"lease_etag": etag})
    assert_error(response, 422, "invalid_request")


def test_held_checkins_need_the_device_token(shared_marketplace, shared_device):
    device_id, token = shared_device
    other_id, other_token = shared_marketplace.create_device("pi-other-longpoll")
    response = shared_marketplace.request("POST", f"/api/v1/devices/{device_id}/checkin?wait=5", token=other_token,
                                          json={"lease_etag": "x"}, timeout=10)
    assert_error(response, 403, "forbidden")
    response = shared_marketplace.request("POST", f"/api/v1/devices/{device_id}/checkin?wait=5", token=None,
                                          json={"lease_etag": "x"}, timeout=10)
    assert_error(response, 401, "unauthorized")


DEVICES = 200


def test_many_held_checkins_do_not_block_other_calls(marketplace_factory):
    marketplace = marketplace_factory()   # a server of its own: 200 devices
    devices = [marketplace.create_device(f"pi-lp-{i}") for i in range(DEVICES)]
    for device in devices[:2]:
        marketplace.register_device(*device)
    etags = [marketplace.checkin(*device)["lease_etag"] for device in devices]
    wait = 15   # long enough for the checks below on a loaded machine (about 5 s), each second costs CI time
    with concurrent.futures.ThreadPoolExecutor(DEVICES) as pool:
        held = [pool.submit(held_checkin, marketplace, device, wait, etag, None, wait + 60)
                for device, etag in zip(devices, etags)]
        time.sleep(3)   # every check-in is held by now (each is a short write at arrival)
        assert not any(future.done() for future in held), "a check-in was answered without a change"
        other = requests.Session()
        timings = {}
        for name, call in (
                ("healthz", lambda: other.get(marketplace.url + "/healthz", timeout=10)),
                ("list devices", lambda: other.get(marketplace.url + "/api/v1/devices", timeout=10,
                                                   headers={"Authorization": f"Bearer {marketplace.operator_token}"})),
                ("check-in", lambda: other.post(marketplace.url + f"/api/v1/devices/{devices[1][0]}/checkin",
                                                json={}, timeout=10,
                                                headers={"Authorization": f"Bearer {devices[1][1]}"}))):
            start = time.monotonic()
            assert call().status_code == 200
            timings[name] = time.monotonic() - start
        rental = marketplace.create_rental(devices[0][0])
        created = time.monotonic()
        dummy, answer = held[0].result(timeout=10)
        answered_after = time.monotonic() - created
        assert answer["lease"]["id"] == rental["id"]
        assert answered_after < EARLY_S, answered_after
        assert max(timings.values()) < 2.0, timings
        assert sum(future.done() for future in held[1:]) == 0, "another device's check-in was answered"
        results = [future.result(timeout=wait + 60) for future in held[1:]]
    assert all(answer["lease"] is None and wait - 0.5 <= took for took, answer in results)
    print(f"\nMEASURED {DEVICES} held check-ins; other calls meanwhile: "
          + ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in timings.items())
          + f"; the rented device's held check-in answered {answered_after * 1000:.0f} ms after the rental call returned")


def worker_pids(server):
    """Pids of the server's worker processes: the children multiprocessing spawned (not its
    resource tracker) of the process the fixture started."""
    pid = server._process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [child for child in children
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes() and
            b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()]


def test_several_workers_wake_each_others_held_checkins(marketplace_factory, tmp_path):
    """On PostgreSQL, --workers 2: a lease change made by one process ends the check-ins held by
    the other (LISTEN/NOTIFY). SQLite serves one process: --workers 2 is refused with a reason."""
    if database_engine() == "sqlite":
        proc = subprocess.run([str(PYTHON), "-m", "p2pvps_server", "--data-dir", str(tmp_path), "--workers", "2"],
                              capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={"PYTHONPATH": str(SERVER_DIR)}, check=False)
        assert proc.returncode == 2 and "--workers above 1 needs a PostgreSQL" in proc.stderr, proc.stderr
        return
    server = marketplace_factory(workers=2)
    assert len(worker_pids(server)) == 2
    devices = [server.online_device(f"pi-worker-{index}") for index in range(6)]
    held = [Background(server, device, 30, server.checkin(*device)["lease_etag"]) for device in devices]
    waiting_until_held()
    rentals = [server.create_rental(device[0])["id"] for device in devices]
    for background, rental_id in zip(held, rentals):
        took, answer = background.join()
        assert took < EARLY_S + 3 and answer["lease"]["id"] == rental_id, (took, answer["lease"])
