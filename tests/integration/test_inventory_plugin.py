"""The marketplace inventory plugin against the real reference server with 1,000 devices.

A recording forwarder between `ansible-inventory` and the server counts the listing calls.
"""
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.fixtures.common import ansible_env
from tests.fixtures.proxies import RecordingForwarder
from tests.fixtures.server import Marketplace

DEVICES = 1000
PAGE = 200
INJECTION = "{{ lookup('ansible.builtin.pipe', 'echo INJECTED') }}"


def create_devices(marketplace, count):
    def worker(offset):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {marketplace.operator_token}"
        for index in range(offset, count, 4):
            answer = session.post(f"{marketplace.url}/api/v1/devices", json={"name": f"pi-{index:04d}"}, timeout=30)
            assert answer.status_code == 201, answer.text

    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture(scope="module")
def fleet_market(marketplace_factory):
    market = marketplace_factory()
    create_devices(market, DEVICES - 4)
    arm = market.online_device("arm-1")
    market.register_device(*arm, facts={"memory_mb": 4096, "disk_gb": 29.0, "cpu_model": "Cortex-A72",
                                        "cpu_count": 4, "architecture": "arm64", "os": "Debian 12",
                                        "docker_version": "20.10.24"})
    small = market.online_device("armhf-1")
    market.register_device(*small, facts={"memory_mb": 512, "disk_gb": 14.0, "cpu_model": "Cortex-A53",
                                          "cpu_count": 4, "architecture": "armhf", "os": "Raspberry Pi OS 12",
                                          "docker_version": "20.10.24"})
    rented = market.online_device("rented-1")
    market.create_rental(rented[0], renter="alice", hours=1)
    market.create_device("evil-1", description=INJECTION)
    forwarder = RecordingForwarder(int(market.url.rsplit(":", 1)[1]))
    yield market, forwarder
    forwarder.close()


# Module scoped (the 1,000 devices are made once), unlike the conftest's factory.
@pytest.fixture(scope="module")
def marketplace_factory(tmp_path_factory):
    started = []

    def factory(**options):
        market = Marketplace(tmp_path_factory.mktemp("inventory-market"), **options).start()
        started.append(market)
        return market

    yield factory
    for market in started:
        market.stop()


def write_config(tmp_path, forwarder, market, **extra):
    token_file = tmp_path / "operator_token"
    token_file.write_text(market.operator_token)
    config = {
        "plugin": "p2pvps.fleet.marketplace", "url": forwarder.url, "token_file": str(token_file),
        "page_size": PAGE,
        "groups": {"big_memory": "p2pvps_device.facts.memory_mb | default(0) > 2048"},
        "keyed_groups": [{"key": "p2pvps_architecture | default('unknown', true)", "prefix": "arch"},
                         {"key": "p2pvps_rented | ternary('rented', 'free')", "prefix": "lease"},
                         {"key": "p2pvps_status", "prefix": "status"}],
        "compose": {"ansible_host": "p2pvps_device.name ~ '.pis.example.org'"},
        "cache": True, "cache_plugin": "ansible.builtin.jsonfile",
        "cache_connection": str(tmp_path / "cache"), "cache_timeout": 3600,
    }
    config.update(extra)
    path = tmp_path / "fleet.marketplace.yml"
    path.write_text(json.dumps(config))
    return path


def inventory(path, *extra):
    proc = subprocess.run(["ansible-inventory", "-i", str(path), "--list", *extra], env=ansible_env(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout), proc.stdout + proc.stderr


def listing_calls(forwarder):
    calls = forwarder.calls()
    assert all(method == "GET" and path.startswith("/api/v1/devices?") for method, path in calls), calls
    return len(calls)


def hosts_of(data, group):
    return set(data.get(group, {}).get("hosts", []))


def test_groups_paging_and_cache(fleet_market, tmp_path):
    market, forwarder = fleet_market
    config = write_config(tmp_path, forwarder, market)
    forwarder.reset()
    started = time.monotonic()
    data, output = inventory(config)
    cold = time.monotonic() - started
    assert listing_calls(forwarder) == DEVICES // PAGE    # one call per page, none per device
    assert market.operator_token not in output
    assert len(data["_meta"]["hostvars"]) == DEVICES
    assert len(hosts_of(data, "p2pvps_devices")) == DEVICES
    assert hosts_of(data, "arch_arm64") == {"arm-1", "rented-1"}     # online_device registers as arm64
    assert hosts_of(data, "arch_armhf") == {"armhf-1"}
    assert hosts_of(data, "lease_rented") == {"rented-1"}
    assert hosts_of(data, "big_memory") == {"arm-1", "rented-1"}
    assert len(hosts_of(data, "status_new")) == DEVICES - 3
    assert len(hosts_of(data, "status_online")) == 3
    host = data["_meta"]["hostvars"]["pi-0007"]["ansible_host"]
    # ansible-inventory marks unsafe values in its JSON: the composed name comes from the API.
    assert host in ("pi-0007.pis.example.org", {"__ansible_unsafe": "pi-0007.pis.example.org"})

    forwarder.reset()
    started = time.monotonic()
    cached, dummy = inventory(config)
    warm = time.monotonic() - started
    assert listing_calls(forwarder) == 0 and cached == data
    print(f"\nMEASURED inventory of {DEVICES} devices: cold {cold:.2f} s ({DEVICES // PAGE} calls), "
          f"cached {warm:.2f} s (0 calls)")

    forwarder.reset()
    inventory(config, "--flush-cache")
    assert listing_calls(forwarder) == DEVICES // PAGE


def test_cache_ttl_is_not_reset_by_reads(fleet_market, tmp_path):
    # The jsonfile cache expires by its file's age: the test ages the file instead of sleeping, so
    # a slow ansible-inventory start on a busy machine cannot move a read across the TTL.
    ttl = 600
    market, forwarder = fleet_market
    config = write_config(tmp_path, forwarder, market, cache_timeout=ttl)
    forwarder.reset()
    inventory(config)
    assert listing_calls(forwarder) == DEVICES // PAGE
    cache_files = list((tmp_path / "cache").iterdir())
    assert cache_files, "no cache file was written"

    def age_cache(seconds):
        then = time.time() - seconds
        for path in cache_files:
            os.utime(path, (then, then))
        return then

    halfway = age_cache(ttl / 2)
    forwarder.reset()
    inventory(config)
    assert listing_calls(forwarder) == 0, "a read within the TTL must come from the cache"
    assert all(path.stat().st_mtime == halfway for path in cache_files), "the read within the TTL rewrote the cache"
    age_cache(ttl + 1)
    forwarder.reset()
    inventory(config)
    assert listing_calls(forwarder) == DEVICES // PAGE, "a read after the TTL must fetch again"


def test_builtin_groups_can_be_turned_off(fleet_market, tmp_path):
    market, forwarder = fleet_market
    data, dummy = inventory(write_config(tmp_path, forwarder, market, cache=False, builtin_groups=False,
                                         status="online"))
    assert not [group for group in data if group.startswith("p2pvps_")], sorted(data)
    assert hosts_of(data, "lease_rented") == {"rented-1"}     # keyed_groups still apply


def test_server_filters_and_query(fleet_market, tmp_path):
    market, forwarder = fleet_market
    online, dummy = inventory(write_config(tmp_path, forwarder, market, status="online", cache=False))
    assert set(online["_meta"]["hostvars"]) == {"arm-1", "armhf-1", "rented-1"}
    arm, dummy = inventory(write_config(tmp_path, forwarder, market, architecture="armhf", cache=False))
    assert set(arm["_meta"]["hostvars"]) == {"armhf-1"}
    query, dummy = inventory(write_config(tmp_path, forwarder, market, cache=False,
                                          query="facts.memory_mb > `2048` && lease == null"))
    assert set(query["_meta"]["hostvars"]) == {"arm-1"}


def unwrap_unsafe(value):
    """A host variable as ansible-inventory prints it, without its {"__ansible_unsafe": ...} marks."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: unwrap_unsafe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap_unsafe(item) for item in value]
    return value


def test_host_variables_are_the_device_data(fleet_market, tmp_path):
    market, forwarder = fleet_market
    listed = requests.get(f"{market.url}/api/v1/devices", params={"status": "online", "limit": "10"}, timeout=30,
                          headers={"Authorization": f"Bearer {market.operator_token}"}).json()["items"]
    device = next(item for item in listed if item["name"] == "rented-1")
    data, dummy = inventory(write_config(tmp_path, forwarder, market, cache=False, status="online"))
    host_vars = {name: unwrap_unsafe(value) for name, value in data["_meta"]["hostvars"]["rented-1"].items()
                 if name.startswith("p2pvps_")}
    assert host_vars == {
        "p2pvps_device": device, "p2pvps_device_id": device["id"], "p2pvps_status": "online",
        "p2pvps_online": True, "p2pvps_rented": True, "p2pvps_lease": device["lease"],
        "p2pvps_architecture": "arm64", "p2pvps_owner": device["owner"],
        "p2pvps_tunnel_remote_port": device["tunnel"]["remote_port"]}
    assert device["lease"]["renter"] == "alice"


def assert_description_stays_text(config):
    """evil-1's description, a Jinja2 expression from the API, printed by a task: as text, never run."""
    proc = subprocess.run(["ansible", "-i", str(config), "evil-1", "-c", "local", "-m", "ansible.builtin.debug",
                           "-a", "msg={{ p2pvps_device.description }}"], env=ansible_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "lookup('ansible.builtin.pipe'" in proc.stdout and "INJECTED\"" not in proc.stdout, proc.stdout


def test_api_strings_are_unsafe(fleet_market, tmp_path):
    market, forwarder = fleet_market
    assert_description_stays_text(write_config(tmp_path, forwarder, market, cache=False, status="new",
                                               query="name == 'evil-1'"))


def test_cached_strings_stay_unsafe(fleet_market, tmp_path):
    market, forwarder = fleet_market
    config = write_config(tmp_path, forwarder, market, status="new", query="name == 'evil-1'")
    for dummy in range(2):   # the first run fills the cache, the second reads it
        forwarder.reset()
        assert_description_stays_text(config)
    assert listing_calls(forwarder) == 0


def test_cache_entry_with_trusted_strings_is_fetched_again(fleet_market, tmp_path):
    # A cache entry holding a device list whose strings are marked trusted, as ansible-core 2.19
    # writes tagged values into its cache files, must not make the description a template: the
    # plugin fetches the listing again.
    cache_persistence = pytest.importorskip("ansible._internal._json._profiles._cache_persistence")
    trust_as_template = pytest.importorskip("ansible.template").trust_as_template
    market, forwarder = fleet_market
    config = write_config(tmp_path, forwarder, market, status="new", query="name == 'evil-1'")
    assert_description_stays_text(config)
    cache_file, = (tmp_path / "cache").iterdir()
    entry = json.loads(cache_file.read_text())
    planted = [{"name": "evil-1", "description": trust_as_template(INJECTION), "status": "new", "lease": None}]
    entry["__payload__"] = json.dumps(planted, cls=cache_persistence.Encoder)
    cache_file.write_text(json.dumps(entry))
    forwarder.reset()
    assert_description_stays_text(config)
    assert listing_calls(forwarder) == DEVICES // PAGE


# ansible-inventory --graph in a Python that counts the calls copying or wrapping a variable's values:
# ansible-core 2.19's variable visitor (a call per value) and wrap_var's step for each dict.
COUNT_VALUE_COPIES = """
import sys
from ansible._internal import _json
from ansible.utils import unsafe_proxy

copies = [0]


def counted(function):
    def wrapper(*args, **kwargs):
        copies[0] += 1
        return function(*args, **kwargs)
    return wrapper


_json.AnsibleVariableVisitor._visit = counted(_json.AnsibleVariableVisitor._visit)
unsafe_proxy._wrap_dict = counted(unsafe_proxy._wrap_dict)
from ansible.cli.inventory import main
sys.argv = ["ansible-inventory", "-i", sys.argv[1], "--graph"]
try:
    main()
finally:
    print("VALUE_COPIES=%d" % copies[0], file=sys.stderr)
"""


def test_device_values_are_not_copied_per_host(fleet_market, tmp_path):
    pytest.importorskip("ansible._internal._json")
    market, forwarder = fleet_market
    config = write_config(tmp_path, forwarder, market, cache=False, groups={}, keyed_groups=[], compose={})
    proc = subprocess.run([sys.executable, "-c", COUNT_VALUE_COPIES, str(config)], env=ansible_env(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "|--pi-0007" in proc.stdout
    copies = int(proc.stderr.rsplit("VALUE_COPIES=", 1)[1].split()[0])
    # Reading the configuration file visits a few dozen values; before, each device's values were
    # wrapped, then copied one by one (26,078 calls for these 1,000 devices).
    assert copies < DEVICES, copies


def test_bad_token_is_a_clear_error_without_the_token(fleet_market, tmp_path):
    market, forwarder = fleet_market
    config = write_config(tmp_path, forwarder, market, cache=False)
    (tmp_path / "operator_token").write_text("not-the-token-0123456789")
    proc = subprocess.run(["ansible-inventory", "-i", str(config), "--list", "-vvv"], env=ansible_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    output = proc.stdout + proc.stderr
    assert "401" in output or "rejected" in output, output[-3000:]
    assert "not-the-token-0123456789" not in output
