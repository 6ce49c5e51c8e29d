"""Open-loop check-in load on the reference server: requests start on a fixed schedule (rate per
second), whatever the server's answers take, so a slow server shows as latency and backlog, not as
a lower offered rate (a closed loop of N threads would slow down with the server and hide it).

Used by benchmarks/run.py (benchmark 5). Loopback only; every run is bounded in time.
"""
import hashlib
import http.client
import json
import os
import queue
import threading
import time
import uuid
from urllib.parse import urlsplit

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _processes():
    """{pid: (parent pid, uid, CPU s)} of the processes running now."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:   # gone meanwhile
            continue
        table[int(entry)] = (int(fields[1]), uid, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return table


def tree_cpu_s(pid):
    """User + system CPU seconds so far of process `pid` and its descendants alive now (the server and
    its --workers processes)."""
    table = _processes()
    members, grew = {pid}, True
    while grew:
        found = {child for child, (parent, dummy, dummy2) in table.items() if parent in members}
        grew = not found <= members
        members |= found
    return sum(table[member][2] for member in members if member in table)


def user_cpu_s(uid):
    """User + system CPU seconds so far of the processes of user `uid` alive now (PostgreSQL's)."""
    return sum(cpu for dummy, owner, cpu in _processes().values() if owner == uid)


def seed_devices(database_url, count, facts, name="load-{:06d}"):
    """`count` registered devices written straight into the server's database (the API would take
    minutes for 100,000) -> [(device_id, token)]. The server must be stopped."""
    from p2pvps_server.db import UTC, Database, Device   # pylint: disable=import-outside-toplevel
    import datetime as dt   # pylint: disable=import-outside-toplevel
    from sqlalchemy import insert   # pylint: disable=import-outside-toplevel
    database = Database(database_url)
    now = dt.datetime.now(UTC)
    devices, rows = [], []
    for index in range(count):
        device_id, token = str(uuid.uuid4()), uuid.uuid4().hex + uuid.uuid4().hex
        devices.append((device_id, token))
        rows.append({"id": device_id, "name": name.format(index), "description": "", "owner": "default",
                     "token_hash": hashlib.sha256(token.encode()).hexdigest(), "facts": facts,
                     "architecture": facts["architecture"], "created_at": now, "registered_at": now,
                     "last_checkin": now})
    with database.engine.begin() as connection:
        for start in range(0, count, 5000):
            connection.execute(insert(Device), rows[start:start + 5000])
    database.dispose()
    return devices


def open_loop(url, devices, rate, seconds, workers=64, drain_s=10):
    """POST a check-in of the next device every 1/rate s for `seconds`; latency counts from the
    scheduled start (so queueing behind a slow server is in it). Returns the figures."""
    target = urlsplit(url)
    jobs = queue.Queue()
    results = []   # (scheduled, started, ended, ok)
    failures = []   # HTTP status or exception name of each failed request
    lock = threading.Lock()
    body = json.dumps({"observed": {}})

    def worker():
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        while True:
            job = jobs.get()
            if job is None:
                break
            scheduled, (device_id, token) = job
            started = time.monotonic()
            try:
                conn.request("POST", f"/api/v1/devices/{device_id}/checkin", body=body,
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
                if not ok:
                    failures.append(str(response.status))
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                ok = False
                failures.append(type(exc).__name__)
            # recorded at once: a worker still busy with the backlog at the deadline keeps what it answered
            with lock:
                results.append((scheduled, started, time.monotonic(), ok))

    pool = [threading.Thread(target=worker, daemon=True) for dummy in range(workers)]
    for thread in pool:
        thread.start()
    total = int(rate * seconds)
    start = time.monotonic() + 0.2
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        jobs.put((scheduled, devices[index % len(devices)]))
    send_end = time.monotonic()
    for dummy in pool:
        jobs.put(None)
    deadline = time.monotonic() + drain_s
    for thread in pool:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        done = list(results)
    latencies = sorted(ended - scheduled for scheduled, dummy, ended, ok in done if ok)
    service = sorted(ended - started for dummy, started, ended, ok in done if ok)
    last = max((ended for dummy, dummy2, ended, dummy3 in done), default=start)

    def pct(values, share):
        return 1000 * values[min(len(values) - 1, int(len(values) * share))] if values else None

    return {"target_per_s": rate, "seconds": seconds, "scheduled": total,
            "sent_on_time_s": send_end - start, "answered_ok": len(latencies),
            "errors": sum(1 for item in done if not item[3]), "unanswered": total - len(done),
            "error_kinds": {kind: failures.count(kind) for kind in sorted(set(failures))},
            "achieved_per_s": len(latencies) / max(last - start, seconds),
            "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99),
            "service_p50_ms": pct(service, 0.5), "service_p99_ms": pct(service, 0.99)}
