"""Long-poll check-ins: an answer held until the device's lease changes.

A check-in with `?wait=N` and the `lease_etag` of the answer the device runs is held while the
device's lease still has that etag: until a write changes the lease (rental created, patched,
ended; device deleted), the lease expires, or the wait is over. A waiting check-in holds no
worker thread: it awaits an asyncio event that the write paths set through `LeaseNotifier`.

The notifier wakes the check-ins held in this process. On PostgreSQL every lease change is also
sent to every server process (`PostgresLeaseChannel`: NOTIFY after the write commits, one LISTEN
connection per process), so that several workers can serve one marketplace. SQLite has no
such channel: the server is one process there.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from p2pvps_server import schemas
from p2pvps_server.db import Database
from p2pvps_server.service import MarketplaceService

LOG = logging.getLogger("p2pvps_server.longpoll")

# A held check-in wakes this long after the lease's expires_at, so that the lease has expired when
# it looks again.
EXPIRY_MARGIN_S = 0.05


class _Waiter:
    """One held check-in: an event in its own event loop, set from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:   # the loop is closed: the server is stopping
            pass

    async def wait(self, timeout: float) -> None:
        """Until woken or `timeout` seconds have passed; re-armed for the next wait."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self.event.clear()


class LeaseNotifier:
    """Which held check-ins wait on which device; `lease_changed` wakes them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[_Waiter]] = {}

    @contextmanager
    def watching(self, device_id: str) -> Iterator[_Waiter]:
        """A waiter for `device_id`, registered before the caller reads the lease (no change is missed)."""
        waiter = _Waiter()
        with self._lock:
            self._waiting.setdefault(device_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                waiters = self._waiting.get(device_id, set())
                waiters.discard(waiter)
                if not waiters:
                    self._waiting.pop(device_id, None)

    def lease_changed(self, device_id: str | None) -> None:
        with self._lock:
            waiters = list(self._waiting.get(device_id, ())) if device_id else []
        for waiter in waiters:
            waiter.wake()

    def waiting(self) -> int:
        """How many check-ins are held now."""
        with self._lock:
            return sum(len(waiters) for waiters in self._waiting.values())


class PostgresLeaseChannel:
    """Lease changes shared by every server process on one PostgreSQL database (LISTEN/NOTIFY).

    `lease_changed` (called by the service after its write committed) sends the device id on the
    channel; a thread per process listens and wakes that process's held check-ins, this one's too.
    While the listening connection is down, held check-ins still end at their timeout or at the
    lease's expiry, and the thread connects again.
    """

    CHANNEL = "p2pvps_lease"
    RECONNECT_S = 1.0

    def __init__(self, database: Database, notifier: LeaseNotifier) -> None:
        self._database = database
        self._notifier = notifier
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._listen_forever, name="lease-channel", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        """Start listening; returns once the channel listens (or after `timeout`)."""
        self._thread.start()
        self._listening.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def lease_changed(self, device_id: str | None) -> None:
        if not device_id:
            return
        try:
            with self._database.engine.begin() as connection:
                connection.execute(text("SELECT pg_notify(:channel, :device_id)"),
                                   {"channel": self.CHANNEL, "device_id": device_id})
        except Exception as exc:  # pylint: disable=broad-except
            # The write is done; its held check-ins end at their timeout instead.
            LOG.warning("lease change of device %s not sent to the other processes: %s", device_id, exc)
            self._notifier.lease_changed(device_id)

    def _listen_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # pylint: disable=broad-except
                self._listening.clear()
                if not self._stop.is_set():
                    LOG.warning("lease channel lost (%s); listening again in %.0f s", exc, self.RECONNECT_S)
                    self._stop.wait(self.RECONNECT_S)

    def _listen(self) -> None:
        import psycopg   # only on PostgreSQL

        url = self._database.engine.url.set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as connection:
            connection.execute(f"LISTEN {self.CHANNEL}")
            self._listening.set()
            while not self._stop.is_set():
                for notify in connection.notifies(timeout=0.5):
                    self._notifier.lease_changed(notify.payload)


def seconds_to_expiry(answer: dict[str, Any]) -> float | None:
    """Seconds from the answer's server_time to its lease's expires_at; None without a lease."""
    lease = answer["lease"]
    if lease is None:
        return None
    expires_at = dt.datetime.fromisoformat(lease["expires_at"].replace("Z", "+00:00"))
    now = dt.datetime.fromisoformat(answer["server_time"].replace("Z", "+00:00"))
    return (expires_at - now).total_seconds()


async def held_checkin(service: MarketplaceService, notifier: LeaseNotifier, device_id: str, token_hash: str,
                       body: schemas.CheckinRequest | None, wait_s: int) -> dict[str, Any]:
    """The check-in answer, at once when the device's lease etag differs from the one it sent (or it sent
    none, or no wait), else when the lease changes, expires or `wait_s` (capped by the setting) passes.
    The heartbeat is recorded at arrival; the answer's server_time is the time of the answer."""
    known = body.lease_etag if body is not None else None
    wait_s = min(wait_s, service.settings.max_checkin_wait_s)
    if not wait_s or known is None:
        return await run_in_threadpool(service.checkin, device_id, token_hash, body)
    deadline = time.monotonic() + wait_s
    with notifier.watching(device_id) as waiter:
        recorded = answer = await run_in_threadpool(service.checkin, device_id, token_hash, body)
        while answer["lease_etag"] == known:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            expiry = seconds_to_expiry(answer)
            if expiry is not None:
                left = min(left, max(0.0, expiry) + EXPIRY_MARGIN_S)
            await waiter.wait(left)
            answer = await run_in_threadpool(service.checkin_answer, device_id)
    # what the check-in itself settled (the wipe receipts it stored) is answered with the lease
    return dict(answer, receipts_acknowledged=recorded["receipts_acknowledged"],
                receipts_refused=recorded["receipts_refused"])
