"""Benchmarks of p2pvps.fleet; every figure that matters is a ratio against a baseline run here.

    bash benchmarks/run.sh [--quick] [--only converge,noop,agent,module,inventory,checkin,load,latency,leasewait,hosting]

Writes benchmarks/results.md (and results.json). Not a test: nothing here passes or fails
on timings. Loopback and the project's own test containers only; every load is bounded.
"""
import argparse
import contextlib
import json
import math
import os
import platform
import pwd
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# pylint: disable=wrong-import-position
import requests  # noqa: E402

from tests.fixtures.common import ansible_env  # noqa: E402
from tests.fixtures.devices import DEVICE_DOCKER_IMAGE, create_fleet  # noqa: E402
from tests.fixtures.fleet import Fleet as HostingFleet  # noqa: E402
from tests.fixtures.fleet import first_byte_seconds, lift_bandwidth_cap, web_speeds_mbit  # noqa: E402
from tests.fixtures.proxies import RecordingForwarder  # noqa: E402
from tests.fixtures.common import free_port  # noqa: E402
from tests.fixtures.server import DEFAULT_FACTS, Marketplace, ed25519_public_key, new_database_url  # noqa: E402

RENTER_IMAGE = "p2pvps/renter:latest"
ANSIBLE_CFG = ROOT / "inventory.example" / "ansible.cfg"
RESULTS = {}
ALL_STEPS = "converge,noop,agent,module,inventory,checkin,load,latency,leasewait,hosting,curve"
START = time.monotonic()


def log(text):
    print(f"[bench {time.monotonic() - START:7.1f}s] {text}", flush=True)


def stats(values):
    return {"min": min(values), "median": statistics.median(values), "runs": len(values)}


def timed(func, *args, **kwargs):
    start = time.monotonic()
    result = func(*args, **kwargs)
    return time.monotonic() - start, result


# The documented ansible.cfg says forks = 50; here 20 simulated Pis share 2 cores and their
# nested Docker Engines copy whole image trees (vfs), so both sides get 10 forks.
FORKS = 10


def bench_env(**extra):
    return ansible_env(ANSIBLE_CONFIG=str(ANSIBLE_CFG), ANSIBLE_FORKS=FORKS, ANSIBLE_SSH_CONTROL_PATH_DIR=tempfile.mkdtemp(
        prefix="cp-", dir="/tmp"), **extra)


def playbook(inventory, name, limit=None, env=None):
    cmd = ["ansible-playbook", "-i", str(inventory), name]
    if limit:
        cmd += ["-l", limit]
    proc = subprocess.run(cmd, cwd=ROOT, env=env or bench_env(), capture_output=True, text=True,
                          timeout=1800, check=False)
    if proc.returncode != 0:
        # With many hosts the recap alone fills the tail: each failed host's first line comes first.
        failures = "\n".join(line[:1500] for line in proc.stdout.splitlines()
                             if line.startswith(("fatal:", "failed:")))
        raise RuntimeError(f"{name} failed:\n{failures}\n...\n{proc.stdout[-5000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


# ---------------------------------------------------------------- 1. fleet converge


class Fleet:
    """N simulated Pis with Docker and the renter image, registered devices at a marketplace."""

    def __init__(self, count, workdir):
        self.name = f"b{uuid.uuid4().hex[:5]}"
        self.fleet = create_fleet(self.name, workdir / "fleet")
        try:
            # the Pis boot at once on the machine's cores: the wait for each grows with the fleet
            self.pis = self.fleet.add(count, image=DEVICE_DOCKER_IMAGE, timeout=max(180, 12 * count))
        except Exception:
            self.fleet.destroy()
            raise
        image_tar = workdir / "renter.tar"
        subprocess.run(["docker", "save", "-o", str(image_tar), RENTER_IMAGE], check=True)
        self.market = Marketplace(workdir / "marketplace", bind_host=self.fleet.gateway(),
                                  checkin_interval=120, offline_after=3600).start()
        self.devices = {}
        for pi in self.pis:
            device_id, token = self.market.create_device(pi.name)
            self.market.register_device(device_id, token)
            self.market.checkin(device_id, token)
            pi.exec("sh", "-c", f"mkdir -p /etc/p2pvps && umask 077 && printf %s '{token}' > /etc/p2pvps/device_token")
            self.devices[pi.name] = (device_id, token)
        self.inventory = workdir / "inventory.json"
        self.inventory.write_text(json.dumps({"all": {
            "vars": {"ansible_user": "pi", "ansible_become": True,
                     "ansible_ssh_private_key_file": str(self.fleet.key_path),
                     "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                                "-o LogLevel=ERROR",
                     "p2pvps_marketplace_url": self.market.url, "p2pvps_validate_certs": False,
                     # these Pis get Docker from their image, not from the docker role: no isolation rules
                     "rental_agent_require_isolation": False,
                     # no registry here: the renter image from a tarball, by the renter_image role
                     "p2pvps_renter_image": RENTER_IMAGE,
                     "renter_image_source": "tarball", "renter_image_tarball": str(image_tar)},
            "children": {"p2pvps_devices": {"hosts": {
                pi.name: {"ansible_host": pi.ip, "p2pvps_device_id": self.devices[pi.name][0],
                          "p2pvps_device_token": self.devices[pi.name][1]} for pi in self.pis}}}}}))
        try:
            playbook(self.inventory, "p2pvps.fleet.renter_images")
        except Exception:
            self.destroy()
            raise

    def rent(self, pis):
        key = ed25519_public_key()
        return [self.market.create_rental(self.devices[pi.name][0], renter="bench", ssh_public_key=key,
                                          hours=1)["id"] for pi in pis]

    def end(self, rental_ids):
        for rental_id in rental_ids:
            self.market.end_rental(rental_id)

    def renter_containers(self, pi):
        return pi.exec("docker", "ps", "-aq").stdout.split()

    def destroy(self):
        self.market.stop()
        self.fleet.destroy()


FLOOR_PB = str(ROOT / "benchmarks" / "baseline" / "floor.yml")


def converge_cycle(fleet, pis, playbook_name, label, floor=None, after_create=None):
    """create -> no-op -> expiry on `pis`; seconds of each. With `floor` (a dict of lists), the floor
    playbook (one ping per host) is timed right after each step, on the same hosts and state;
    `after_create` is called once the renter containers run."""
    limit = ",".join(pi.name for pi in pis)

    def step(case):
        seconds, dummy = timed(playbook, fleet.inventory, playbook_name, limit)
        if floor is not None:
            floor.setdefault(case, []).append(timed(playbook, fleet.inventory, FLOOR_PB, limit)[0])
        log(f"{label}, {len(pis)} hosts, {case}: {seconds:.1f} s"
            + (f" (floor {floor[case][-1]:.1f} s)" if floor is not None else ""))
        return seconds

    rentals = fleet.rent(pis)
    create = step("create")
    if not all(fleet.renter_containers(pi) for pi in pis):
        raise RuntimeError(f"{label}: not every Pi runs a renter container after the create converge")
    if after_create is not None:
        after_create()
    noop = step("noop")
    fleet.end(rentals)
    expiry = step("expiry")
    if any(fleet.renter_containers(pi) for pi in pis):
        raise RuntimeError(f"{label}: a renter container is left after the expiry converge")
    return {"create": create, "noop": noop, "expiry": expiry}


def spread(values):
    """(max - min) / median, the runs' spread."""
    return (max(values) - min(values)) / statistics.median(values)


def bench_converge(workdir, sizes, reps, extras=True):
    fleet = Fleet(max(sizes), workdir)
    ours_pb, base_pb = "p2pvps.fleet.converge", str(ROOT / "benchmarks" / "baseline" / "converge.yml")
    table = {}
    try:
        # Warm up both (SSH control sockets, Python byte code on the devices), not measured.
        converge_cycle(fleet, fleet.pis, ours_pb, "warm-up ours")
        converge_cycle(fleet, fleet.pis, base_pb, "warm-up baseline")
        playbook(fleet.inventory, FLOOR_PB)
        for size in sizes:
            pis = fleet.pis[:size]
            runs = {"ours": [], "baseline": []}
            floor = {}
            for rep in range(reps):
                order = [("ours", ours_pb), ("baseline", base_pb)]
                if rep % 2:
                    order.reverse()
                for who, name in order:
                    runs[who].append(converge_cycle(fleet, pis, name, who, floor if who == "ours" else None))
            row = {}
            for case in ("create", "noop", "expiry"):
                ours_runs = [r[case] for r in runs["ours"]]
                base_runs = [r[case] for r in runs["baseline"]]
                ours, base, low = stats(ours_runs), stats(base_runs), stats(floor[case])
                for cell, values in ((ours, ours_runs), (base, base_runs), (low, floor[case])):
                    cell["spread"] = spread(values)
                    cell["values"] = [round(value, 2) for value in values]
                row[case] = {"ours": ours, "baseline": base, "floor": low,
                             "speedup_median": base["median"] / ours["median"],
                             "speedup_min": base["min"] / ours["min"],
                             "over_floor_median": ours["median"] / low["median"]}
            table[size] = row
            log(f"converge N={size}: " + ", ".join(
                f"{case} ours {row[case]['ours']['median']:.1f}s / baseline {row[case]['baseline']['median']:.1f}s "
                f"= x{row[case]['speedup_median']:.2f}, / floor {row[case]['floor']['median']:.1f}s "
                f"= x{row[case]['over_floor_median']:.2f}" for case in row))
        if extras:
            table["profile"] = profile_noop(fleet)
            table["mitogen"] = try_mitogen(fleet, workdir, reps)
    finally:
        fleet.destroy()
    RESULTS["converge"] = table


CURVE_PNG = ROOT / "benchmarks" / "converge-curve.png"


def bench_curve(workdir, sizes, reps):
    """Our converge (create, no-op, expiry) and the floor against the fleet size, up to the largest fleet
    of simulated Pis this machine holds; a PNG of seconds against hosts next to the table."""
    free_at_start = docker_disk_free_gb()
    fleet = Fleet(max(sizes), workdir)
    table = {}
    try:
        converge_cycle(fleet, fleet.pis, "p2pvps.fleet.converge", "warm-up ours")
        for size in sorted(sizes):
            floor, runs, free = {}, [], []
            for dummy in range(reps):
                runs.append(converge_cycle(fleet, fleet.pis[:size], "p2pvps.fleet.converge", "curve", floor,
                                           after_create=lambda: free.append(docker_disk_free_gb())))
            table[str(size)] = {case: {"ours": statistics.median(run[case] for run in runs),
                                       "floor": statistics.median(floor[case]),
                                       "values": [round(run[case], 2) for run in runs]}
                                for case in ("create", "noop", "expiry")}
            table[str(size)]["disk_used_gb"] = round(free_at_start - min(free), 1)
    finally:
        fleet.destroy()
    RESULTS["curve"] = {"sizes": table, "forks": FORKS, "reps": reps, "png": plot_curve(table),
                        "disk_free_at_start_gb": round(free_at_start, 1)}


def docker_disk_free_gb():
    """Free space of the file system holding the host's Docker root (the simulated Pis and what they store)."""
    root = subprocess.run(["docker", "info", "-f", "{{.DockerRootDir}}"], capture_output=True, text=True,
                          check=True).stdout.strip()
    return shutil.disk_usage(root).free / 1e9


def plot_curve(table):
    """benchmarks/converge-curve.png with gnuplot (Debian's gnuplot-nox); the path, or why there is none."""
    if shutil.which("gnuplot") is None:
        return "no PNG: gnuplot is not installed (benchmarks/run.sh installs gnuplot-nox)"
    data = "\n".join(" ".join([size] + [f"{row[case][who]:.2f}" for case in ("create", "noop", "expiry")
                                        for who in ("ours", "floor")])
                     for size, row in sorted(table.items(), key=lambda item: int(item[0])))
    script = "\n".join([
        "set terminal pngcairo size 900,540 noenhanced" if _gnuplot_has("pngcairo") else "set terminal png size 900,540",
        f"set output '{CURVE_PNG}'",
        f"set title 'p2pvps.fleet.converge on N simulated Pis ({FORKS} forks, 2 cores; median seconds)'",
        "set xlabel 'hosts (N)'", "set ylabel 'seconds'", "set key left top", "set grid",
        "$data << EOD", data, "EOD",
        "plot $data using 1:2 with linespoints title 'create', $data using 1:4 with linespoints title 'no-op', "
        "$data using 1:6 with linespoints title 'expiry', $data using 1:3 with lines dashtype 2 title "
        "'floor (one ping per host)'"])
    proc = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        return f"no PNG: gnuplot failed: {proc.stderr[-300:]}"
    return str(CURVE_PNG.relative_to(ROOT))


def _gnuplot_has(terminal):
    proc = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True, timeout=30, check=False)
    return f" {terminal} " in proc.stdout + proc.stderr


def profile_noop(fleet):
    """profile_tasks of one no-op converge of each, on the whole fleet."""
    rentals = fleet.rent(fleet.pis)
    profiles = {}
    try:
        for who, name in (("ours", "p2pvps.fleet.converge"),
                          ("baseline", str(ROOT / "benchmarks" / "baseline" / "converge.yml"))):
            playbook(fleet.inventory, name)   # create
            out = playbook(fleet.inventory, name, env=bench_env(ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks"))
            profiles[who] = [line.strip() for line in out.splitlines()
                             if re.search(r" -+ \d+\.\d+s$", line)][:8]
            fleet.end(rentals)
            playbook(fleet.inventory, name)   # wipe
            rentals = fleet.rent(fleet.pis)
    finally:
        fleet.end(rentals)
    return profiles


MITOGEN = "mitogen==0.3.54"


def try_mitogen(fleet, workdir, reps):
    """Our no-op converge on the whole fleet with and without Mitogen (not a requirement)."""
    target = workdir / "mitogen"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target), MITOGEN],
                             capture_output=True, text=True, timeout=300, check=False)
    if install.returncode != 0:
        return {"error": f"pip install {MITOGEN} failed: {install.stderr[-500:]}"}
    mitogen_env = bench_env(ANSIBLE_STRATEGY_PLUGINS=str(target / "ansible_mitogen" / "plugins" / "strategy"),
                            ANSIBLE_STRATEGY="mitogen_linear", PYTHONPATH=str(target))
    rentals = fleet.rent(fleet.pis)
    try:
        playbook(fleet.inventory, "p2pvps.fleet.converge")
        plain, with_mitogen = [], []
        for dummy in range(reps):
            plain.append(timed(playbook, fleet.inventory, "p2pvps.fleet.converge")[0])
            try:
                with_mitogen.append(timed(playbook, fleet.inventory, "p2pvps.fleet.converge", env=mitogen_env)[0])
            except RuntimeError as exc:
                return {"error": str(exc)[-1500:]}
        result = {"plain_noop": stats(plain), "mitogen_noop": stats(with_mitogen),
                  "speedup_median": statistics.median(plain) / statistics.median(with_mitogen)}
        log(f"mitogen no-op N={len(fleet.pis)}: x{result['speedup_median']:.2f}")
        return result
    finally:
        fleet.end(rentals)
        playbook(fleet.inventory, "p2pvps.fleet.converge")


# ---------------------------------------------------------------- 2. no-op cost (counted)


def bench_noop():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                           "tests/integration/test_rental_module.py", "-k", "noop_converge"], cwd=ROOT, env=ansible_env(),
                          capture_output=True, text=True, timeout=900, check=False)
    line = next((text for text in proc.stdout.splitlines() if "MEASURED" in text), None)
    RESULTS["noop"] = {"passed": proc.returncode == 0, "measured": line}
    log(f"no-op cost: {line} (test {'passed' if proc.returncode == 0 else 'FAILED'})")


# ---------------------------------------------------------------- 3. device agent cost

# One child's CPU (user + system s) and peak RSS, and whether the module reported a change.
RUSAGE = ("import json, resource, subprocess, sys; out = subprocess.run(sys.argv[1:], capture_output=True).stdout; "
          "r = resource.getrusage(resource.RUSAGE_CHILDREN); "
          "print(r.ru_utime + r.ru_stime, r.ru_maxrss, json.loads(out or '{}').get('changed'))")
AGENT_INSTALL_DIR = "/usr/local/lib/p2pvps"
BEFORE_INSTALL_DIR = "/usr/local/lib/p2pvps-before"


def agent_command(install_dir):
    """The rental module as p2pvps-rental-agent.service runs it: no byte code written at run time."""
    return ["env", f"PYTHONPATH={install_dir}", "PYTHONDONTWRITEBYTECODE=1", "python3", "-m",
            "ansible_collections.p2pvps.fleet.plugins.modules.rental", "/etc/p2pvps/rental-agent.json"]


def install_before(pi, before):
    """Another copy of the collection's plugins on the Pi, as module_runtime installed them before it
    compiled them: sources only."""
    target = f"{BEFORE_INSTALL_DIR}/ansible_collections/p2pvps/fleet"
    pi.exec("mkdir", "-p", target)
    pack = subprocess.Popen(["tar", "-C", str(Path(before) / "ansible_collections" / "p2pvps" / "fleet"),
                             "--exclude=__pycache__", "-c", "plugins"], stdout=subprocess.PIPE)
    subprocess.run(["docker", "exec", "-i", pi.container_id, "tar", "-x", "-C", target], stdin=pack.stdout,
                   check=True, timeout=120)
    if pack.wait() != 0:
        raise RuntimeError(f"could not pack {before}")


def bench_agent(workdir, reps, before=None):
    """CPU of one agent run that changes nothing (long-poll off: one plain check-in), on a simulated Pi;
    with `before`, that copy's runs alternate with ours, from the same config and state."""
    fleet = Fleet(1, workdir)
    pi = fleet.pis[0]
    try:
        apply_agent(fleet, workdir, rental_agent_enabled=False, rental_agent_longpoll=False)
        commands = {"after": agent_command(AGENT_INSTALL_DIR), "bare": ["python3", "-c", "pass"]}
        if before:
            install_before(pi, before)
            commands["before"] = agent_command(BEFORE_INSTALL_DIR)

        def measure(who):
            cpu, rss, changed = pi.exec("python3", "-c", RUSAGE, *commands[who]).stdout.split()
            if who != "bare" and changed != "False":
                raise RuntimeError(f"the {who} agent run was not a no-op (changed: {changed})")
            return float(cpu), int(rss)

        fleet.rent([pi])
        pi.exec(*commands["after"])   # creates the container
        runs = {who: [] for who in commands}
        for dummy in range(reps):
            for who in commands:
                runs[who].append(measure(who))
        cpu = stats([r[0] for r in runs["after"]])
        base_cpu = stats([r[0] for r in runs["bare"]])
        interval = 120
        RESULTS["agent"] = {
            "cpu_s": cpu, "peak_rss_kib": max(r[1] for r in runs["after"]), "python_startup_cpu_s": base_cpu,
            "ratio_to_python_startup": cpu["median"] / base_cpu["median"],
            "core_fraction_at_120s": cpu["median"] / interval,
            # A Pi Zero 2 W (Cortex-A53, 1 GHz) runs Python roughly 8x slower than one core here.
            "core_fraction_pi_zero_2_estimate": cpu["median"] * 8 / interval,
            "runs_cpu_s": {who: [round(r[0], 3) for r in values] for who, values in runs.items()},
        }
        if before:
            RESULTS["agent"]["before_cpu_s"] = stats([r[0] for r in runs["before"]])
        compared = f"; before: {RESULTS['agent']['before_cpu_s']['median']:.3f} CPU s" if before else ""
        log(f"agent no-op run: {cpu['median']:.3f} CPU s, x{RESULTS['agent']['ratio_to_python_startup']:.1f} a "
            f"bare python3 start{compared}")
    finally:
        fleet.destroy()


# ---------------------------------------------------------------- 3b. the module's CPU and phases on the host


def bench_module(reps, before=None):
    """benchmarks/tools/module_cpu.py: the rental module's CPU per no-op run on this host (and that of
    another copy of the collection, `before`), and the phase timings of one create, no-op and expiry."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "tools" / "module_cpu.py"), "--reps", str(reps)]
    if before:
        cmd += ["--before", before]
    proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=900,
                          check=True)
    RESULTS["module"] = json.loads(proc.stdout)


# ---------------------------------------------------------------- 4. inventory scale


def create_devices(market, count):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {market.operator_token}"

    def worker(start):
        for index in range(start, count, 4):
            session.post(f"{market.url}/api/v1/devices", json={"name": f"inv-{index:05d}"}, timeout=30)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# keyed_groups cost about 4x the built-in groups (measured at 1,000 and 5,000); at 20,000 they would
# add minutes to the run for a ratio already known.
TEMPLATED_MAX = 5000


def inventory_configs(workdir, size, url, token_file, name=""):
    """Our plugin's configuration (cache in a directory of its own), the same groups by keyed_groups,
    and a static YAML inventory of the same host names: {kind: path}."""
    stem = workdir / f"inv-{size}{name}"
    common = {"plugin": "p2pvps.fleet.marketplace", "url": url, "token_file": str(token_file),
              "page_size": 500, "cache": True, "cache_plugin": "ansible.builtin.jsonfile",
              "cache_connection": f"{stem}-cache", "cache_timeout": 3600}
    paths = {"ours": Path(f"{stem}.marketplace.yml"), "templated": Path(f"{stem}-templated.marketplace.yml"),
             "static": Path(f"{stem}.static.yml")}
    paths["ours"].write_text(json.dumps(common))
    # The same groups from Jinja2 expressions, as before the built-in groups existed.
    paths["templated"].write_text(json.dumps({**common, "builtin_groups": False,
                                              "groups": {"p2pvps_devices": "true"},
                                              "keyed_groups": [
                                                  {"key": "p2pvps_status", "prefix": "p2pvps_status"},
                                                  {"key": "p2pvps_architecture | default('unknown', true)",
                                                   "prefix": "p2pvps_arch"},
                                                  {"key": "p2pvps_rented | ternary('rented', 'free')",
                                                   "prefix": "p2pvps", "separator": "_"}]}))
    paths["static"].write_text(json.dumps({"all": {"children": {"status_new": {"hosts": {
        f"inv-{i:05d}": {"p2pvps_status": "new"} for i in range(size)}}}}}))
    return paths


def collections_env(collections=None):
    """ansible_env() with `collections` (a directory holding ansible_collections/p2pvps/fleet) instead of ours."""
    return ansible_env(**({"ANSIBLE_COLLECTIONS_PATH": str(collections)} if collections else {}))


def list_inventory(path, flush=False, collections=None):
    """ansible-inventory --list: (seconds, hosts in its _meta)."""
    cmd = ["ansible-inventory", "-i", str(path), "--list"] + (["--flush-cache"] if flush else [])
    elapsed, proc = timed(subprocess.run, cmd, env=collections_env(collections), capture_output=True, text=True,
                          timeout=900, check=True)
    return elapsed, len(json.loads(proc.stdout)["_meta"]["hostvars"])


def parse_inventory(path, flush=False, collections=None):
    """The inventory's parse alone, what a playbook waits for before its first task:
    ansible all --list-hosts (no host variables printed) -> (seconds, hosts listed)."""
    cmd = ["ansible", "all", "-i", str(path), "--list-hosts"] + (["--flush-cache"] if flush else [])
    elapsed, proc = timed(subprocess.run, cmd, env=collections_env(collections), capture_output=True, text=True,
                          timeout=900, check=True)
    listed = re.search(r"hosts \((\d+)\):", proc.stdout)
    return elapsed, int(listed.group(1)) if listed else 0


def inventory_round(proxy, paths, size, collections=None):
    """One repetition of our plugin (or the copy in `collections`): --list cold (cache flushed) and
    cached, the parse cold and cached -> {measure: seconds}, and the API calls of the cold --list."""
    times = {}
    proxy.reset()
    times["cold"], hosts = list_inventory(paths["ours"], flush=True, collections=collections)
    calls = len(proxy.calls())
    assert hosts == size, (hosts, size)
    proxy.reset()
    times["cached"], hosts = list_inventory(paths["ours"], collections=collections)
    assert hosts == size and not proxy.calls(), "a cached run must not call the API"
    times["parse_cold"], hosts = parse_inventory(paths["ours"], flush=True, collections=collections)
    assert hosts == size, (hosts, size)
    proxy.reset()
    times["parse_cached"], hosts = parse_inventory(paths["ours"], collections=collections)
    assert hosts == size and not proxy.calls(), "a cached parse must not call the API"
    return times, calls


def inventory_row(runs, calls, size):
    """The table row of one size from its runs ({measure: [seconds]})."""
    median = {name: statistics.median(values) for name, values in runs.items()}
    row = {name: stats(values) for name, values in runs.items() if name not in ("static", "parse_static", "keyed")}
    row.update(static_baseline=stats(runs["static"]), parse_static=stats(runs["parse_static"]),
               api_calls_cold=max(calls), pages_expected=math.ceil(size / 500),
               cold_over_static=median["cold"] / median["static"],
               cached_over_static=median["cached"] / median["static"],
               parse_cold_over_static=median["parse_cold"] / median["parse_static"],
               parse_cached_over_static=median["parse_cached"] / median["parse_static"])
    if "keyed" in runs:
        row.update(cached_templated_groups=stats(runs["keyed"]),
                   templated_over_builtin=median["keyed"] / median["cached"])
    return row


def bench_inventory(workdir, sizes, reps, before=None):
    """Benchmark 4; with `before` (another copy of the collection), its plugin's runs alternate with ours,
    each from a configuration and cache of its own."""
    table = {}
    for size in sizes:
        market = Marketplace(workdir / f"inv-{size}").start()
        if size > TEMPLATED_MAX:   # registered, online devices written straight into the database (seconds, not minutes)
            market.stop()
            _checkin_load().seed_devices(f"sqlite:///{market.db_path}", size, DEFAULT_FACTS, name="inv-{:05d}")
            market.start()
        try:
            if size <= TEMPLATED_MAX:
                create_devices(market, size)
            proxy = RecordingForwarder(int(market.url.rsplit(":", 1)[1]))
            token_file = workdir / f"inv-{size}.token"
            token_file.write_text(market.operator_token)
            paths = inventory_configs(workdir, size, proxy.url, token_file)
            before_paths = inventory_configs(workdir, size, proxy.url, token_file, "-before") if before else None
            runs, before_runs, calls = {}, {}, []
            for dummy in range(reps):
                times, cold_calls = inventory_round(proxy, paths, size)
                calls.append(cold_calls)
                for name, seconds in times.items():
                    runs.setdefault(name, []).append(seconds)
                if before:
                    for name, seconds in inventory_round(proxy, before_paths, size, before)[0].items():
                        before_runs.setdefault(name, []).append(seconds)
                runs.setdefault("static", []).append(list_inventory(paths["static"])[0])
                runs.setdefault("parse_static", []).append(parse_inventory(paths["static"])[0])
                if size <= TEMPLATED_MAX:
                    runs.setdefault("keyed", []).append(list_inventory(paths["templated"])[0])
            table[size] = inventory_row(runs, calls, size)
            if before:
                table[size]["before"] = {name: stats(values) for name, values in before_runs.items()}
            row = table[size]
            log(f"inventory {size}: --list cold {row['cold']['median']:.2f}s ({max(calls)} API calls), cached "
                f"{row['cached']['median']:.2f}s, static YAML {row['static_baseline']['median']:.2f}s; parse cold "
                f"{row['parse_cold']['median']:.2f}s, cached {row['parse_cached']['median']:.2f}s, static YAML "
                f"{row['parse_static']['median']:.2f}s")
            proxy.close()
        finally:
            market.stop()
    RESULTS["inventory"] = table


# ---------------------------------------------------------------- 5. check-in load


def load(market, paths, duration_s, threads):
    """Hit `paths` (method, path, token, body) round-robin from `threads` for `duration_s`."""
    latencies, errors = [], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s

    def worker(offset):
        session = requests.Session()
        index = offset
        mine = []
        while time.monotonic() < deadline:
            method, path, token, body = paths[index % len(paths)]
            index += threads
            start = time.monotonic()
            response = session.request(method, market.url + path, json=body, timeout=30,
                                       headers={"Authorization": f"Bearer {token}"})
            mine.append(time.monotonic() - start)
            if response.status_code != 200:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    latencies.sort()
    return {"requests_per_s": len(latencies) / duration_s, "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)], "errors": errors[0],
            "requests": len(latencies)}


def bench_checkin(workdir, duration_s, threads):
    market = Marketplace(workdir / "load").start()
    try:
        devices = []
        for index in range(200):
            device_id, token = market.create_device(f"load-{index}")
            market.register_device(device_id, token)
            devices.append((device_id, token))
        checkins = [("POST", f"/api/v1/devices/{d}/checkin", t, {"observed": {}}) for d, t in devices]
        reads = [("GET", f"/api/v1/devices/{d}", t, None) for d, t in devices]
        read = load(market, reads, duration_s, threads)
        checkin = load(market, checkins, duration_s, threads)
        needed = 10000 / 120
        RESULTS["checkin"] = {"checkin": checkin, "device_read_baseline": read, "needed_per_s_10k_at_120s": needed,
                              "headroom": checkin["requests_per_s"] / needed,
                              "checkin_over_read": checkin["requests_per_s"] / read["requests_per_s"],
                              "threads": threads, "duration_s": duration_s}
        log(f"check-ins: {checkin['requests_per_s']:.0f}/s p50 {checkin['p50_ms']:.1f} ms p99 "
            f"{checkin['p99_ms']:.1f} ms ({checkin['errors']} errors); 10k devices need {needed:.0f}/s")
    finally:
        market.stop()


# ---------------------------------------------------------------- 5b. check-in load, open loop


def _checkin_load():
    sys.path.insert(0, str(ROOT / "server"))
    sys.path.insert(0, str(ROOT / "benchmarks" / "tools"))
    import checkin_load   # pylint: disable=import-outside-toplevel,import-error
    return checkin_load


LOAD_FLEETS = ((10000, 10000 / 120), (100000, 100000 / 120))
# (database, server worker processes): SQLite serves one process; PostgreSQL one, and one per core.
LOAD_SERVERS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2))


@contextlib.contextmanager
def postgres_cluster():
    """A throw-away PostgreSQL cluster (scripts/postgres.sh, Debian's server) -> its admin URL."""
    directory = tempfile.mkdtemp(prefix="p2pvps-bench-pg-", dir="/var/tmp")
    port = free_port()
    try:
        url = subprocess.run(["bash", "scripts/postgres.sh", "start", directory, str(port)], cwd=ROOT,
                             capture_output=True, text=True, check=True, timeout=120).stdout.strip()
        yield url
    finally:
        subprocess.run(["bash", "scripts/postgres.sh", "stop", directory], cwd=ROOT, check=False, timeout=120)


def load_options(args):
    """(fleets, servers) of the load benchmark from --load-fleets and --load-servers."""
    fleets = (tuple((int(count), int(count) / 120) for count in args.load_fleets.split(","))
              if args.load_fleets else LOAD_FLEETS)
    servers = (tuple((database, int(workers)) for database, workers in
                     (server.split(":") for server in args.load_servers.split(",")))
               if args.load_servers else LOAD_SERVERS)
    return fleets, servers


def bench_load(workdir, seconds, fleets=LOAD_FLEETS, servers=LOAD_SERVERS):
    """Check-ins of whole fleets at a 120 s interval, open loop, on SQLite and on PostgreSQL with one and
    two server processes; the server's CPU and PostgreSQL's apart from the load generator's."""
    table = {}
    with postgres_cluster() as admin_url:
        for database, workers in servers:
            for devices_count, rate in fleets:
                key = f"{database}-{workers}-{devices_count}"
                try:
                    row = _load_run(workdir, database, workers, devices_count, rate, seconds, admin_url)
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:   # the next runs still run
                    table[key] = {"database": database, "workers": workers, "devices": devices_count,
                                  "failed": repr(exc)[:300]}
                    log(f"load {database} x{workers} {devices_count} devices failed: {exc!r}")
                    continue
                table[key] = row
                log(f"load {database} x{workers} {devices_count} devices at {rate:.0f}/s: {row['achieved_per_s']:.0f}/s, "
                    f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, {row['errors']} errors {row['error_kinds']}, "
                    f"{row['unanswered']} unanswered, server CPU {100 * row['server_cpu_core_share']:.0f} % of a "
                    f"core, PostgreSQL {100 * row['database_cpu_core_share']:.0f} %, generator "
                    f"{100 * row['generator_cpu_core_share']:.0f} %")
    RESULTS["load"] = table


def _load_run(workdir, database, workers, devices_count, rate, seconds, admin_url):
    checkin_load = _checkin_load()
    data_dir = workdir / f"load-{database}-{workers}-{devices_count}"
    data_dir.mkdir(parents=True)
    url = new_database_url(data_dir / "marketplace.db", admin_url if database == "postgresql" else None)
    market = Marketplace(data_dir, database=url, workers=workers if workers > 1 else None).start()
    market.stop()   # the schema exists now; the devices go straight into the database
    devices = checkin_load.seed_devices(url, devices_count, DEFAULT_FACTS)
    market.start()
    postgres_uid = pwd.getpwnam("postgres").pw_uid
    try:
        pid = market._process.pid   # pylint: disable=protected-access
        before = (checkin_load.tree_cpu_s(pid), checkin_load.user_cpu_s(postgres_uid), time.process_time())
        row = checkin_load.open_loop(market.url, devices, rate, seconds)
        after = (checkin_load.tree_cpu_s(pid), checkin_load.user_cpu_s(postgres_uid), time.process_time())
    finally:
        market.stop()
    server, postgres, generator = ((end - begin) / seconds for begin, end in zip(before, after))
    return dict(row, devices=devices_count, database=database, workers=workers, server_cpu_core_share=server,
                database_cpu_core_share=postgres, generator_cpu_core_share=generator)


# ---------------------------------------------------------------- 6. lease latency


def bench_latency():
    name = f"l{uuid.uuid4().hex[:5]}"
    proc = subprocess.run([sys.executable, "scripts/demo.py", "--name", name, "--down-after"], cwd=ROOT,
                          env=ansible_env(), capture_output=True, text=True, timeout=1800, check=False)
    login = re.search(r"renter logged in ([\d.]+) s after", proc.stdout)
    wipe = re.search(r"container wiped ([\d.]+) s after", proc.stdout)
    RESULTS["latency"] = {"agent_interval_s": 15,
                          "create_to_login_s": float(login.group(1)) if login else None,
                          "end_to_wipe_s": float(wipe.group(1)) if wipe else None}
    log(f"lease latency (pull, 15 s timer): {RESULTS['latency']}")


# ---------------------------------------------------------------- 8. lease wait: long-poll vs one check-in per interval (README: benchmark 8)


AGENT_INTERVAL_S = 120   # rental_agent_interval_s's default
LEASE_GONE = "docker ps -aq --filter label=p2pvps.lease; docker volume ls -q --filter label=p2pvps.lease"


def bench_lease_wait(workdir, reps):
    """Rental created -> renter logged in, rental ended -> container and volumes gone, with the device
    agent at its default interval: long-poll check-ins (the default) against one plain check-in per
    interval (the baseline, `rental_agent_longpoll: false`), in turn on the same simulated Pi."""
    fleet = Fleet(1, workdir)
    pi = fleet.pis[0]
    device_id = fleet.devices[pi.name][0]
    key = workdir / "renter"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    subprocess.run(["docker", "exec", "-i", pi.container_id, "sh", "-c", "umask 077 && cat > /root/renter_key"],
                   input=key.read_bytes(), check=True, timeout=30)
    phase = random.Random(13)
    results = {}
    try:
        for mode, longpoll in (("baseline", False), ("longpoll", True)):
            apply_agent(fleet, workdir, rental_agent_longpoll=longpoll)
            since, started = pi.exec("date", "+%Y-%m-%d %H:%M:%S").stdout.strip(), time.monotonic()
            runs = []
            for rep in range(reps):
                # A rental comes at any moment of the agent's cycle.
                time.sleep(phase.uniform(0, AGENT_INTERVAL_S))
                rental = fleet.market.create_rental(device_id, renter="bench", hours=1,
                                                    ssh_public_key=Path(f"{key}.pub").read_text().strip())
                container_s, login_s = until_login(pi, rental["id"])
                time.sleep(phase.uniform(0, AGENT_INTERVAL_S))
                fleet.market.end_rental(rental["id"])
                wiped_s = until(lambda: not pi.exec("sh", "-c", LEASE_GONE).stdout.split())
                runs.append({"container_s": container_s, "login_s": login_s, "wiped_s": wiped_s})
                log(f"lease wait, {mode} {rep + 1}/{reps}: {runs[-1]}")
            hours = (time.monotonic() - started) / 3600
            results[mode] = {"runs": runs, "checkins_per_hour": agent_starts(pi, since) / hours,
                             **{name: stats([run[name] for run in runs]) for name in runs[0]}}
        RESULTS["leasewait"] = {
            "interval_s": AGENT_INTERVAL_S, "reps": reps, **results,
            "login_speedup": results["baseline"]["login_s"]["median"] / results["longpoll"]["login_s"]["median"],
            "wipe_speedup": results["baseline"]["wiped_s"]["median"] / results["longpoll"]["wiped_s"]["median"]}
        log(f"lease wait: {RESULTS['leasewait']}")
    finally:
        fleet.destroy()


def apply_agent(fleet, workdir, **role_vars):
    """The rental_agent role on the bench Pis, with its defaults but for `role_vars`."""
    playbook_file = workdir / "agent.yml"
    playbook_file.write_text(json.dumps([{
        "hosts": "p2pvps_devices", "become": True, "roles": [{"role": "p2pvps.fleet.rental_agent"}],
        "vars": {"rental_agent_marketplace_url": fleet.market.url,
                 "rental_agent_device_id": "{{ p2pvps_device_id }}", **role_vars}}]))
    playbook(fleet.inventory, str(playbook_file))


def until(condition, timeout=AGENT_INTERVAL_S * 2 + 120, step=0.25):
    """Seconds until `condition()` holds."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"not reached within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


def until_login(pi, rental_id):
    """(seconds until the lease's container exists, seconds until the renter logs in over SSH) from now."""
    start = time.monotonic()
    until(lambda: lease_container_running(pi, rental_id))
    container_s = time.monotonic() - start
    until(lambda: pi.exec("ssh", "-p", "2222", "-i", "/root/renter_key", "-o", "StrictHostKeyChecking=no",
                          "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                          "bench@127.0.0.1", "id -un", check=False).stdout.strip() == "bench")
    return container_s, time.monotonic() - start


def lease_container_running(pi, rental_id):
    return bool(pi.exec("docker", "ps", "-q", "--filter", f"label=p2pvps.lease={rental_id}").stdout.strip())


def agent_starts(pi, since):
    """Runs of the agent (one check-in each) since `since`, from the Pi's journal."""
    journal = pi.exec("journalctl", "-u", "p2pvps-rental-agent.service", "--since", since, "--no-pager",
                      "-o", "cat").stdout
    return sum(1 for line in journal.splitlines() if line.startswith("Starting "))


# ---------------------------------------------------------------- 7. web hosting and the sandbox


LOADGEN = (ROOT / "benchmarks" / "tools" / "loadgen.py").read_text()
RENTER_APP = (ROOT / "tests" / "integration" / "files" / "renter_app.py").read_text()


def bench_hosting(workdir, seconds):
    """A renter's small page through gateway + tunnel vs straight to the container; the sandbox's caps."""
    fleet = HostingFleet(f"w{uuid.uuid4().hex[:5]}", workdir / "hosting", pi_count=1, interval_s=15, report=log)
    try:
        fleet.up()
        fleet.apply_site()
        pi = fleet.pis[0]
        fleet.wait_tunnel(pi)
        key = workdir / "renter"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        rental = fleet.rent(pi, "bench", Path(f"{key}.pub").read_text().strip())
        created = time.monotonic()
        login_s = fleet.wait_login(pi, "bench", key, 120)
        fleet.renter_ssh(pi, "bench", key, "cat > ~/app.py", stdin=RENTER_APP)
        fleet.renter_ssh(pi, "bench", key, "echo '<h1>a small page</h1>' > ~/index.html && cd ~ && "
                         "setsid -f python3 ~/app.py 8080 >/dev/null 2>&1 < /dev/null")
        host = rental["web"]["hostname"]
        first_byte_seconds(host, fleet.tunnel.ip, fleet.ca_file(), 120)
        first_byte_s = time.monotonic() - created
        subprocess.run(["docker", "exec", "-i", pi.container_id, "sh", "-c", "cat > /root/loadgen.py"],
                       input=LOADGEN, text=True, check=True)
        subprocess.run(["docker", "cp", str(fleet.ca_file()), f"{pi.container_id}:/root/gateway-root.crt"], check=True)
        runs = {}
        for label, args in (("straight", ["http://127.0.0.1:2280/"]),
                            ("gateway", [f"https://{host}/", "--connect", fleet.tunnel.ip,
                                         "--cafile", "/root/gateway-root.crt"])):
            out = pi.exec("python3", "/root/loadgen.py", *args, "--threads", "8", "--seconds", str(seconds),
                          timeout=seconds + 60).stdout
            runs[label] = json.loads(out)
        RESULTS["hosting"] = {
            "seconds": seconds, "threads": 8, "runs": runs,
            "gateway_over_straight_rps": runs["gateway"]["requests_per_s"] / runs["straight"]["requests_per_s"],
            "create_to_login_s": login_s, "create_to_first_https_byte_s": first_byte_s, "timer_s": 15,
            "sandbox": sandbox_caps(pi),
        }
        log(f"hosting: {RESULTS['hosting']}")
    finally:
        fleet.down()


def direct_write_mb_s(pi, path, *prefix):
    """MB/s of 30 MiB written with O_DIRECT to `path` on the Pi (`prefix`: e.g. docker exec into a container)."""
    out = pi.exec(*prefix, "sh", "-c", f"dd if=/dev/zero of={path} bs=1M count=30 oflag=direct 2>&1 | tail -1; "
                  f"rm -f {path}").stdout
    value, unit = out.rsplit(", ", 1)[1].split()   # "... copied, 3.0 s, 10.5 MB/s"
    return float(value) * {"kB/s": 1e-3, "MB/s": 1, "GB/s": 1e3}[unit]


def sandbox_caps(pi):
    """Bandwidth each way and direct-write rate of the renter container, capped and with the caps lifted."""
    container = pi.exec("docker", "ps", "-q", "--filter", "label=p2pvps.lease").stdout.strip()
    home = pi.exec("sh", "-c", "ls -d /var/lib/p2pvps/disks/*/home").stdout.strip()
    uid = pi.exec("docker", "exec", container, "id", "-u", "bench").stdout.strip()   # Docker reads the image's passwd
    down, up = web_speeds_mbit(pi)
    capped = {"down_mbit": down, "up_mbit": up,
              "direct_write_MB_s": direct_write_mb_s(pi, "/home/bench/w", "docker", "exec", "-u", uid, container)}
    lift_bandwidth_cap(pi, container)
    down, up = web_speeds_mbit(pi)
    # the same lease disk, written from outside the container (no budget there)
    lifted = {"down_mbit": down, "up_mbit": up, "direct_write_MB_s": direct_write_mb_s(pi, f"{home}/w")}
    return {"capped": capped, "lifted": lifted, "cap_mbit": 20, "budget_MiB_s": 10}


# ---------------------------------------------------------------- report


def machine():
    cpu = next((text.split(":", 1)[1].strip() for text in Path("/proc/cpuinfo").read_text().splitlines()
                if text.startswith("model name")), platform.machine())
    docker = subprocess.run(["docker", "version", "-f", "{{.Server.Version}}"], capture_output=True,
                            text=True, check=False).stdout.strip()
    return f"{os.cpu_count()} x {cpu}, {platform.system()} {platform.release()}, Docker {docker}, Python {platform.python_version()}"


def _converge_lines(converge):
    lines = ["## Fleet converge: p2pvps.fleet.converge vs uri + community.docker, and the floor (seconds, median "
             "of runs; speed-up = baseline / ours; over floor = ours / floor, the floor being one "
             "ansible.builtin.ping per host on the same hosts right after ours; spread = (max - min) / median)", "",
             "| hosts | case | ours median (spread) | baseline median (spread) | floor median (spread) | "
             "speed-up (median) | over floor (median) |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for size, row in converge.items():
        if not str(size).isdigit():
            continue
        when = f" (measured {row['measured']})" if row.get("measured") else ""
        for case, cell in row.items():
            if case == "measured":
                continue
            floor = cell.get("floor")   # none in a run from before the floor was measured
            lines.append(f"| {size}{when} | {case} | {_with_spread(cell['ours'])} | {_with_spread(cell['baseline'])} | "
                         f"{_with_spread(floor) if floor else '-'} | x{cell['speedup_median']:.2f} | "
                         + (f"x{cell['over_floor_median']:.2f} |" if floor else "- |"))
    extras_when = f" (measured {converge['extras_measured']})" if converge.get("extras_measured") else ""
    for who, rows in (converge.get("profile") or {}).items():
        lines += ["", f"profile_tasks, no-op converge, {who}{extras_when}:", "", "```text", *rows, "```"]
    mitogen = converge.get("mitogen")
    if not mitogen:   # --no-extras
        return lines
    lines += ["", f"Mitogen (our no-op converge, whole fleet){extras_when}: " + (
        mitogen.get("error", "")[:300] if "error" in mitogen else
        f"plain {mitogen['plain_noop']['median']:.1f} s, mitogen {mitogen['mitogen_noop']['median']:.1f} s, "
        f"x{mitogen['speedup_median']:.2f}")]
    return lines


def rows_of_other_sizes(earlier_rows, sizes, started):
    """The rows of `earlier_rows` for fleet sizes not in `sizes` (strings), each saying when it was
    measured (its own stamp, else `started`, the run it came from)."""
    return {str(size): dict(row, measured=row.get("measured") or started)
            for size, row in earlier_rows.items() if str(size).isdigit() and str(size) not in sizes}


def provenance_of(earlier, name):
    """Where the step `name` of an earlier results file came from: {started, machine}."""
    return earlier.get("provenance", {}).get(name) or earlier


def merge_converge(earlier, source, new, extras):
    """The converge rows of a run of some sizes (--sizes) next to the other sizes' rows of `earlier`
    (the last run's, from `source`), each kept row saying when it was measured; the same for the
    profile_tasks and Mitogen extras when this run did not make them (--no-extras)."""
    merged = rows_of_other_sizes(earlier, {str(key) for key in new}, source["started"])
    if not extras:
        for key in ("profile", "mitogen"):
            if earlier.get(key):
                merged[key] = earlier[key]
        if merged.get("profile") or merged.get("mitogen"):
            merged["extras_measured"] = earlier.get("extras_measured") or source["started"]
    merged.update({str(key): value for key, value in new.items()})
    return dict(sorted(merged.items(), key=lambda item: (not item[0].isdigit(),
                                                         int(item[0]) if item[0].isdigit() else 0)))


def _with_spread(cell):
    return f"{cell['median']:.1f}" + (f" ({cell['spread']:.0%})" if "spread" in cell else "")


def _noop_lines(noop):
    return ["", "## No-op cost per host (counted; asserted by test_rental_module.py::"
            "test_noop_converge_makes_one_api_call_and_few_docker_calls)", "", f"{noop['measured']}"]


def _agent_lines(agent):
    lines = ["", "## Device agent: one pull-mode run with a live lease (no change; long-poll off, one plain check-in; "
             "as the unit runs it, PYTHONDONTWRITEBYTECODE=1)", "",
             "| CPU s (min / median) | peak RSS | bare `python3 -c pass` CPU s | ratio | share of a core at 120 s "
             "| estimate on a Pi Zero 2 |", "| ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| {agent['cpu_s']['min']:.3f} / {agent['cpu_s']['median']:.3f} | "
             f"{agent['peak_rss_kib'] / 1024:.0f} MiB | {agent['python_startup_cpu_s']['median']:.3f} | "
             f"x{agent['ratio_to_python_startup']:.1f} | {100 * agent['core_fraction_at_120s']:.2f} % | "
             f"{100 * agent['core_fraction_pi_zero_2_estimate']:.1f} % |"]
    if "before_cpu_s" in agent:
        runs = agent["runs_cpu_s"]
        lines += ["", "Alternating on the same Pi, config and lease, with the `--before` copy installed as "
                  "module_runtime installed it then (sources only):", ""]
        lines += _trees_table({"before": (runs["before"], agent["before_cpu_s"]["median"]),
                               "after": (runs["after"], agent["cpu_s"]["median"]),
                               "bare": (runs["bare"], agent["python_startup_cpu_s"]["median"])})
    return lines


def _trees_table(trees):
    """CPU seconds per run of each tree ({name: (runs, median)}, in order) and, with a `before`, after / before."""
    lines = ["| tree | runs | median |", "| --- | --- | ---: |"]
    lines += [f"| {who} | {', '.join(f'{v:.3f}' for v in runs)} | {median:.3f} |" for who, (runs, median) in trees.items()]
    if "before" in trees:
        lines += ["", f"after / before: x{trees['after'][1] / trees['before'][1]:.2f}"]
    return lines


def _module_lines(module):
    lines = ["", "## The rental module on the host: CPU per no-op run (python -m ... args.json, as the rental_agent "
             "runs it; user + system CPU s)", ""]
    lines += _trees_table({who: (module[who]["cpu_s"], module[who]["median"]) for who in ("before", "after")
                           if who in module})
    lines += ["", "## Where one converge's time goes (P2PVPS_RENTAL_PHASES=1, host Docker Engine; ms)", "",
              "| phase | " + " | ".join(f"{case} wall | {case} CPU" for case in module["phases"]) + " |",
              "| --- |" + " ---: | ---: |" * len(module["phases"])]
    names = []
    for items in module["phases"].values():
        for item in items["items"]:
            if item["phase"] not in names:
                names.append(item["phase"])
    for name in names:
        cells = []
        for items in module["phases"].values():
            found = [item for item in items["items"] if item["phase"] == name]
            cells += [f"{sum(i['wall_ms'] for i in found):.1f}", f"{sum(i['cpu_ms'] for i in found):.1f}"] \
                if found else ["-", "-"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Docker Engine calls (wall ms):", ""]
    for case, items in module["phases"].items():
        calls = [f"{c['call']} {c['wall_ms']:.1f}" for item in items["items"] for c in item["docker_calls"]]
        lines.append(f"- {case} (Docker SDK imported: {'yes' if items['sdk_imported'] else 'no'}): "
                     + (", ".join(calls) or "none"))
    return lines


def _seconds(row, name):
    return f"{row[name]['median']:.2f}" if name in row else "not run"


def _ratio(row, name):
    return f"x{row[name]:.2f}" if name in row else "-"


def _inventory_lines(inventory):
    lines = ["", "## Inventory plugin (seconds, median: ansible-inventory --list, and the parse alone, ansible all "
             "--list-hosts)", "",
             "| devices | cold | API calls | cached | cached, same groups by keyed_groups | static YAML of "
             "the same hosts | cold / static | cached / static | parse: cold | parse: cached | parse: static YAML "
             "| parse: cold / static | parse: cached / static |",
             "| ---: |" + " ---: |" * 12]
    for size, row in inventory.items():
        when = f" (measured {row['measured']})" if row.get("measured") else ""
        lines.append(f"| {size}{when} | {row['cold']['median']:.2f} | {row['api_calls_cold']} "
                     f"(pages: {row['pages_expected']}) | {row['cached']['median']:.2f} | "
                     f"{_seconds(row, 'cached_templated_groups')} | {row['static_baseline']['median']:.2f} | "
                     f"x{row['cold_over_static']:.2f} | x{row['cached_over_static']:.2f} | "
                     f"{_seconds(row, 'parse_cold')} | {_seconds(row, 'parse_cached')} | "
                     f"{_seconds(row, 'parse_static')} | {_ratio(row, 'parse_cold_over_static')} | "
                     f"{_ratio(row, 'parse_cached_over_static')} |")
    lines += ["", f"keyed_groups are not run above {TEMPLATED_MAX:,} devices (minutes, for a ratio already "
              "known). The static YAML columns are ansible-core's own cost for the same host names: the floor of "
              "any inventory plugin. --list also prints every host's variables (ours: the device's data, nine "
              "variables); the parse builds the inventory and lists the host names, what a playbook waits for "
              "before its first task. Cold runs flush the cache (--flush-cache) and fetch the devices, 500 per "
              f"call. Above {TEMPLATED_MAX:,} the devices are written straight into the server's database "
              "(registered, online, with facts: a little more data per host than the new devices created through "
              "the API below it)."]
    return lines + _inventory_before_lines(inventory)


INVENTORY_BEFORE_COLUMNS = (("cold", "--list cold"), ("cached", "--list cached"), ("parse_cold", "parse cold"),
                            ("parse_cached", "parse cached"))


def _inventory_before_lines(inventory):
    """Before / after, when the run alternated another copy of the plugin (--before) with ours."""
    compared = {size: row for size, row in inventory.items() if "before" in row}
    if not compared:
        return []
    lines = ["", "Before / after: the `--before` copy of the collection's plugin, alternating with ours in the same "
             "run, each from a configuration and cache of its own (seconds, median; after / before):", "",
             "| devices | " + " | ".join(title for dummy, title in INVENTORY_BEFORE_COLUMNS) + " |",
             "| ---: |" + " --- |" * len(INVENTORY_BEFORE_COLUMNS)]
    for size, row in compared.items():
        cells = []
        for name, dummy in INVENTORY_BEFORE_COLUMNS:
            before, after = row["before"][name]["median"], row[name]["median"]
            cells.append(f"{before:.2f} -> {after:.2f} = x{after / before:.2f}")
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    return lines


def _checkin_lines(checkin):
    lines = ["", f"## Check-ins on the reference server (SQLite, {checkin['threads']} client threads on the "
             f"same 2 cores, {checkin['duration_s']} s each)", "",
             "| call | req/s | p50 ms | p99 ms | errors |", "| --- | ---: | ---: | ---: | ---: |"]
    for name in ("checkin", "device_read_baseline"):
        row = checkin[name]
        lines.append(f"| {name} | {row['requests_per_s']:.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                     f"{row['errors']} |")
    return lines + ["", f"10,000 devices at a 120 s interval need {checkin['needed_per_s_10k_at_120s']:.0f} "
                    f"check-ins/s: headroom x{checkin['headroom']:.1f}; a check-in costs "
                    f"x{1 / checkin['checkin_over_read']:.2f} a device read."]


def _load_lines(load):
    lines = ["", "## Check-in load of whole fleets (open loop at the fleet's rate, 120 s interval, loopback; latency "
             "counts from each request's scheduled start; CPU in cores, the load generator sharing the 2 cores)", "",
             "| database | server processes | devices | target /s | achieved /s | p50 ms | p99 ms | errors | "
             "unanswered | server CPU | PostgreSQL CPU | server + database CPU ms per check-in | generator CPU |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def ms(value):
        return "-" if value is None else f"{value:.1f}"

    for row in load.values():
        if "database" not in row:
            continue   # a row of the SQLite-only table before PostgreSQL was measured
        if "failed" in row:
            lines.append(f"| {row['database']} | {row['workers']} | {row['devices']} | the run failed: "
                         f"{row['failed']} |" + " |" * 9)
            continue
        spent = row["server_cpu_core_share"] + row["database_cpu_core_share"]
        errors = f"{row['errors']} {row['error_kinds']}" if row["errors"] else "0"
        lines.append(f"| {row['database']} | {row['workers']} | {row['devices']} | {row['target_per_s']:.0f} | "
                     f"{row['achieved_per_s']:.0f} | {ms(row['p50_ms'])} | {ms(row['p99_ms'])} | {errors} | "
                     f"{row['unanswered']} | {row['server_cpu_core_share']:.2f} | {row['database_cpu_core_share']:.2f} | "
                     f"{1000 * spent / max(row['achieved_per_s'], 1e-9):.1f} | {row['generator_cpu_core_share']:.2f} |")
    return lines + ["", "SQLite serves one process (uvicorn, one worker; check-ins run in its thread pool, their "
                    "writes serialised by one lock, as SQLite allows one writer; on PostgreSQL a check-in without "
                    "wipe receipts is not serialised). A check-in is one transaction: a SELECT of the device (by "
                    "its token's hash) with its lease, and an UPDATE of what changed. PostgreSQL runs with "
                    "fsync off (scripts/postgres.sh: a throw-away cluster), so its commits cost no disk flush; on a "
                    "real server with fsync on, each check-in's commit waits for one."]


def _latency_lines(latency):
    return ["", "## Lease latency (demo, pull mode, timer every 15 s)", "",
            f"rental created -> renter logged in: {latency['create_to_login_s']} s; "
            f"rental ended -> container gone: {latency['end_to_wipe_s']} s"]


def _leasewait_lines(wait):
    lines = ["", f"## Lease wait: the device agent at its default interval ({wait['interval_s']} s), long-poll vs "
             f"one check-in per interval (seconds, {wait['reps']} runs each, each event at a random moment of the "
             "agent's cycle)", "",
             "| | baseline min | baseline median | long-poll min | long-poll median | speed-up (median) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    base, poll = wait["baseline"], wait["longpoll"]
    for name, text in (("container_s", "rental created -> renter container exists"),
                       ("login_s", "rental created -> renter logged in (SSH)"),
                       ("wiped_s", "rental ended -> container and volumes gone")):
        lines.append(f"| {text} | {base[name]['min']:.1f} | {base[name]['median']:.1f} | {poll[name]['min']:.1f} | "
                     f"{poll[name]['median']:.1f} | x{base[name]['median'] / poll[name]['median']:.1f} |")
    return lines + ["", f"Check-ins per hour (agent runs in the device's journal over each phase): baseline "
                        f"{base['checkins_per_hour']:.0f}, long-poll {poll['checkins_per_hour']:.0f} (these phases "
                        "are mostly lease changes; idle, long-poll makes one per interval)."]


def _hosting_lines(hosting):
    runs = hosting["runs"]
    lines = ["", f"## Web hosting: a renter's small page, {hosting['threads']} keep-alive clients for "
             f"{hosting['seconds']} s each, run inside the Pi", "",
             "| path | req/s | p50 ms | p99 ms | errors |", "| --- | ---: | ---: | ---: | ---: |"]
    for label, text in (("straight", "straight to the container (127.0.0.1:2280 on the Pi)"),
                        ("gateway", "HTTPS through the gateway (Caddy) and the SSH tunnel")):
        row = runs[label]
        lines.append(f"| {text} | {row['requests_per_s']:.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                     f"{row['errors']} |")
    caps = hosting["sandbox"]
    return lines + [
        "", f"Gateway / straight: x{hosting['gateway_over_straight_rps']:.2f} of the requests per second.",
        f"Rental created -> renter logged in: {hosting['create_to_login_s']:.1f} s; -> first HTTPS byte of the "
        f"renter's page: {hosting['create_to_first_https_byte_s']:.1f} s (device and gateway timers every "
        f"{hosting['timer_s']} s).", "",
        "## Sandbox caps (the same renter container)", "",
        "| | download Mbit/s | upload Mbit/s | direct writes MB/s |", "| --- | ---: | ---: | ---: |",
        f"| capped ({caps['cap_mbit']} Mbit/s, {caps['budget_MiB_s']} MiB/s) | {caps['capped']['down_mbit']:.1f} | "
        f"{caps['capped']['up_mbit']:.1f} | {caps['capped']['direct_write_MB_s']:.1f} |",
        f"| cap lifted / outside the container | {caps['lifted']['down_mbit']:.0f} | "
        f"{caps['lifted']['up_mbit']:.0f} | {caps['lifted']['direct_write_MB_s']:.0f} |"]


def _curve_lines(curve):
    lines = ["", f"## Converge against the fleet size (p2pvps.fleet.converge, {curve['forks']} forks, median of "
             f"{curve['reps']} run(s), seconds; the floor is one ansible.builtin.ping per host right after each step)", "",
             "| hosts | create | no-op | expiry | floor after create | floor after no-op | floor after expiry "
             "| host disk used after create, GB |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for size, row in sorted(curve["sizes"].items(), key=lambda item: int(item[0])):
        disk = row.get("disk_used_gb")
        lines.append(f"| {size} | " + " | ".join(f"{row[case]['ours']:.1f}" for case in ("create", "noop", "expiry"))
                     + " | " + " | ".join(f"{row[case]['floor']:.1f}" for case in ("create", "noop", "expiry"))
                     + f" | {'not measured' if disk is None else disk} |")
    png = curve["png"]
    lines += ["", f"![converge time against hosts]({Path(png).name})" if png.endswith(".png") else png]
    if "disk_free_at_start_gb" in curve:
        lines += ["", f"The disk column counts from before the fleet was made ({curve['disk_free_at_start_gb']} GB free): "
                      "the Pis' nested Engines (vfs), the renter image in each and every lease's disk share the "
                      "host's file system ([docs/scale.md](../docs/scale.md))."]
    return lines


SECTIONS = (("converge", _converge_lines), ("noop", _noop_lines), ("agent", _agent_lines), ("module", _module_lines),
            ("inventory", _inventory_lines), ("checkin", _checkin_lines), ("load", _load_lines),
            ("latency", _latency_lines),
            ("leasewait", _leasewait_lines), ("hosting", _hosting_lines), ("curve", _curve_lines))
# Analysis written by hand about the runs above (targets, bounds): kept below the generated sections.
NOTES = ROOT / "benchmarks" / "results-notes.md"


def render(results):
    """results.json as Markdown tables (benchmarks/results.md), a section per benchmark that ran,
    each with the run and the machine it comes from (a partial run keeps the other sections)."""
    lines = ["# Benchmark results", ""]
    for key, section in SECTIONS:
        if results.get(key):
            source = results.get("provenance", {}).get(key) or results
            lines += section(results[key]) + ["", f"_Measured {source['started']} on {source['machine']}._"]
    if NOTES.exists():
        lines += ["", NOTES.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    parser.add_argument("--only", default=ALL_STEPS)
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, 2 with --quick)")
    parser.add_argument("--sizes", default=None, help="fleet sizes of the converge benchmark, e.g. 5,20 "
                        "(default 5,10,20; 5 with --quick; the other sizes' rows of the last run are kept, "
                        "each row saying when it was measured)")
    parser.add_argument("--before", default=None, help="module, agent and inventory: a directory holding another "
                        "copy of the collection (ansible_collections/p2pvps/fleet) to compare with, e.g. from git "
                        "archive")
    parser.add_argument("--no-extras", action="store_true", help="converge without the profile_tasks and "
                        "Mitogen runs")
    parser.add_argument("--inventory-sizes", default=None,
                        help="device counts of benchmark 4, e.g. 20000 (the other sizes' rows of the last "
                             "run are kept, each row saying when it was measured)")
    parser.add_argument("--load-fleets", default=None,
                        help="device counts of the check-in load benchmark, e.g. 10000 (default 10000,100000)")
    parser.add_argument("--load-servers", default=None,
                        help="database:processes of the check-in load benchmark, e.g. sqlite:1,postgresql:1 "
                             "(default sqlite:1,postgresql:1,postgresql:2)")
    parser.add_argument("--curve-sizes", default=None,
                        help="fleet sizes of the converge curve (default 1,5,10,20,24; 1,5 with --quick)")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    reps = args.reps or (2 if args.quick else 3)
    sizes = [int(size) for size in args.sizes.split(",")] if args.sizes else [5] if args.quick else [5, 10, 20]
    RESULTS["machine"] = machine()
    RESULTS["started"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    curve_sizes = ([int(size) for size in args.curve_sizes.split(",")] if args.curve_sizes
                   else [1, 5] if args.quick else [1, 5, 10, 20, 24])
    inventory_sizes = ([int(size) for size in args.inventory_sizes.split(",")] if args.inventory_sizes
                       else [1000] if args.quick else [1000, 5000, 20000])
    with tempfile.TemporaryDirectory(prefix="p2pvps-bench-") as tmp:
        workdir = Path(tmp)
        steps = [
            ("checkin", lambda: bench_checkin(workdir, 5 if args.quick else 10, 8)),
            ("load", lambda: bench_load(workdir, 10 if args.quick else 20, *load_options(args))),
            ("inventory", lambda: bench_inventory(workdir, inventory_sizes, reps, args.before)),
            ("noop", bench_noop),
            ("agent", lambda: bench_agent(workdir, reps, args.before)),
            ("module", lambda: bench_module(max(reps, 5), args.before)),
            ("converge", lambda: bench_converge(workdir, sizes, reps, not args.no_extras)),
            ("latency", bench_latency),
            ("leasewait", lambda: bench_lease_wait(workdir, reps)),
            ("hosting", lambda: bench_hosting(workdir, 5 if args.quick else 15)),
            ("curve", lambda: bench_curve(workdir, curve_sizes, 1 if args.quick else reps)),
        ]
        for name, step in steps:
            if name in only:
                log(f"--- {name}")
                step()
    stem = "results-quick" if args.quick else "results"
    previous = ROOT / "benchmarks" / f"{stem}.json"
    RESULTS["provenance"] = {name: {"started": RESULTS["started"], "machine": RESULTS["machine"]}
                             for name, dummy in steps if name in only}
    if args.only != ALL_STEPS and previous.exists():   # a partial run updates the last full one
        earlier = json.loads(previous.read_text())
        for name, dummy in steps:
            if name not in only and name in earlier:
                RESULTS[name] = earlier[name]
                source = provenance_of(earlier, name)
                RESULTS["provenance"][name] = {"started": source["started"], "machine": source["machine"]}
        if args.inventory_sizes and "inventory" in only and "inventory" in earlier:
            kept = rows_of_other_sizes(earlier["inventory"], {str(size) for size in inventory_sizes},
                                       provenance_of(earlier, "inventory")["started"])
            RESULTS["inventory"] = {**kept, **{str(size): row for size, row in RESULTS["inventory"].items()}}
        if "converge" in only and "converge" in earlier:
            RESULTS["converge"] = merge_converge(earlier["converge"], provenance_of(earlier, "converge"),
                                                 RESULTS["converge"], not args.no_extras)
    (ROOT / "benchmarks" / f"{stem}.json").write_text(json.dumps(RESULTS, indent=2, default=str) + "\n")
    (ROOT / "benchmarks" / f"{stem}.md").write_text(render(RESULTS))
    log(f"results in benchmarks/{stem}.md and .json")


if __name__ == "__main__":
    main()
