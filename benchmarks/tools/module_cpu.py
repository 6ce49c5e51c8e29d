"""The rental module's own cost on this host, run as the rental_agent runs it (pull mode: python -m ... args.json)
against the reference server and the host's Docker Engine, with a live lease.

    python benchmarks/tools/module_cpu.py --reps 5 [--before /path/holding/ansible_collections]

Prints, as JSON: the CPU seconds (user + system, the module's process and its children) of each no-op run,
for this tree and for `--before` (another copy of the collection, e.g. `git archive main`), alternating;
then the phase timings (P2PVPS_RENTAL_PHASES=1) of one create, one no-op and one expiry of this tree.
Run it under the team's Docker lock."""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.server import Marketplace, ed25519_public_key  # noqa: E402  pylint: disable=wrong-import-position

MODULE = "ansible_collections.p2pvps.fleet.plugins.modules.rental"


def run_module(collections, args_file, phases=False):
    """(CPU seconds, result) of one module run."""
    env = dict(os.environ, PYTHONPATH=str(collections))
    env.pop("P2PVPS_RENTAL_PHASES", None)
    if phases:
        env["P2PVPS_RENTAL_PHASES"] = "1"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", MODULE, str(args_file)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise RuntimeError(f"module output: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    if result.get("failed"):
        raise RuntimeError(f"module failed: {result.get('msg')}")
    return cpu, result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--before", default=None)
    args = parser.parse_args()
    ours = ROOT / ".cache" / "collections"
    out = {}
    with tempfile.TemporaryDirectory(prefix="p2pvps-modcpu-") as tmp:
        tmp = Path(tmp)
        market = Marketplace(tmp / "marketplace").start()
        lease_id = None
        try:
            device = market.create_device(name="modcpu-" + uuid.uuid4().hex[:6])
            market.register_device(device["id"], device["device_token"])
            market.checkin(device["id"], device["device_token"])
            args_file = tmp / "args.json"
            args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
                "marketplace_url": market.url, "device_id": device["id"], "device_token": device["device_token"],
                "state_dir": str(tmp / "state"), "local_port": 42222, "web_local_port": 42280,
                "require_isolation": False, "timeout": 10}}))
            phases = {}
            lease_id = market.create_rental(device["id"], renter="modcpu", ssh_public_key=ed25519_public_key(),
                                            hours=1)["id"]
            phases["create"] = run_module(ours, args_file, phases=True)[1]["phases"]
            run_module(ours, args_file)   # the first no-op after a create (bandwidth record, etc.)
            phases["noop"] = run_module(ours, args_file, phases=True)[1]["phases"]
            runs = {"after": [], "before": []}
            for dummy in range(args.reps):
                runs["after"].append(run_module(ours, args_file)[0])
                if args.before:
                    runs["before"].append(run_module(Path(args.before), args_file)[0])
            market.end_rental(lease_id)
            start = time.monotonic()
            phases["expiry"] = run_module(ours, args_file, phases=True)[1]["phases"]
            out["expiry_wall_s"] = round(time.monotonic() - start, 2)
            lease_id = None
            for who, values in runs.items():
                if values:
                    out[who] = {"cpu_s": [round(v, 3) for v in values], "median": round(statistics.median(values), 3)}
            out["phases"] = phases
        finally:
            if lease_id:
                market.end_rental(lease_id)
                run_module(ours, args_file)
            market.stop()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
