"""The marketplace's rules: devices, registration, check-ins, tunnel and web ports, rentals, web routes."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import secrets
import string
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, load_only
from sqlalchemy.orm.exc import StaleDataError

from p2pvps_server import receipts, schemas
from p2pvps_server.auth import device_caller, hash_token, new_device_token, require_device
from p2pvps_server.db import Database, Device, ReleasedPort, Rental, WipeReceipt, utcnow
from p2pvps_server.errors import ApiError, conflict, forbidden, not_found, unauthorized
from p2pvps_server.settings import Settings
from p2pvps_server.validation import MAX_RENTAL_S
from p2pvps_server.views import (REQUIRED_LIMITS, checkin_view, device_view, format_time, receipt_view, rental_view,
                                 route_view, tunnel_key_view, unenforced_limits)

PORT_ALLOCATION_ATTEMPTS = 5
PORT_RANGE_EXHAUSTED = {"tunnel": "port_range_exhausted", "web": "web_port_range_exhausted"}
RENTAL_ATTEMPTS = 5
DEFAULT_LIMITS = {"memory_mb": 512, "cpus": 1.0, "pids": 256, "disk_gb": 2}
MAX_CURSOR_LEN = 256
MAX_ROUTE_CURSOR_LEN = 400
CURSOR_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
CURSOR_HOSTNAME_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,252}$")
LABEL_SUFFIX_CHARS = string.ascii_lowercase + string.digits
LABEL_SUFFIX_LEN = 6


@dataclass(frozen=True)
class DeviceQuery:
    limit: int = 100
    cursor: str | None = None
    status: str | None = None
    owner: str | None = None
    architecture: str | None = None
    rented: bool | None = None


def encode_cursor(last_key: str) -> str:
    """The opaque cursor after `last_key` (a device id or a hostname): unpadded base64url."""
    return base64.urlsafe_b64encode(last_key.encode("utf-8")).decode("ascii").rstrip("=")


def keyset_page(items: list[dict[str, Any]], limit: int, key: str) -> dict[str, Any]:
    """A page of `limit` items from `limit + 1` read; the cursor is the last item's `key`."""
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_cursor": encode_cursor(items[-1][key]) if more else None}


def decode_cursor(cursor: str, key_re: re.Pattern[str] = CURSOR_ID_RE, max_len: int = MAX_CURSOR_LEN) -> str:
    invalid = ApiError(400, "invalid_cursor", "the cursor is not one this server issued")
    if len(cursor) > max_len:
        raise invalid
    try:
        text = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise invalid from None
    if not key_re.fullmatch(text):
        raise invalid
    return text


def random_label_suffix() -> str:
    return "".join(secrets.choice(LABEL_SUFFIX_CHARS) for dummy in range(LABEL_SUFFIX_LEN))


def web_label(renter: str, suffix: str) -> str:
    """'alice_b' -> 'alice-b-k3j9xq': a DNS label (renter logins are at most 32 characters).

    Runs of '-' become one (no 'xn--'-like labels), leading and trailing '-' go; a login of
    underscores only becomes 'renter'.
    """
    name = re.sub(r"-+", "-", renter.replace("_", "-")).strip("-") or "renter"
    return f"{name}-{suffix}"


def lowest_free_port(used: Iterable[int], low: int, high: int) -> int | None:
    """The lowest port of low..high that is not in `used` (sorted ascending)."""
    candidate = low
    for port in used:
        if port > candidate:
            break
        if port == candidate:
            candidate += 1
    return candidate if candidate <= high else None


def _active_condition(now: dt.datetime) -> Any:
    return and_(Rental.ended_at.is_(None), Rental.expires_at > now)


class MarketplaceService:
    def __init__(self, database: Database, settings: Settings, clock: Callable[[], dt.datetime] = utcnow,
                 label_suffix: Callable[[], str] = random_label_suffix,
                 lease_changed: Callable[[str], None] = lambda device_id: None) -> None:
        self.db = database
        self.settings = settings
        self.clock = clock
        self.label_suffix = label_suffix
        # Called with a device id after a write that may change that device's lease has committed.
        self.lease_changed = lease_changed

    # ------------------------------------------------------------------ helpers

    def _device(self, session: Session, device_id: str) -> Device:
        device = session.get(Device, device_id)
        if device is None:
            raise not_found("device")
        return device

    def _rental(self, session: Session, rental_id: str) -> Rental:
        rental = session.get(Rental, rental_id)
        if rental is None:
            raise not_found("rental")
        return rental

    def _active_rental(self, session: Session, device_id: str, now: dt.datetime) -> Rental | None:
        query = select(Rental).where(Rental.device_id == device_id, _active_condition(now))
        return session.scalars(query).first()

    def _view(self, session: Session, device: Device, now: dt.datetime) -> dict[str, Any]:
        return device_view(device, self._active_rental(session, device.id, now), self.settings, now)

    def _close_open_rentals(self, session: Session, device_id: str, now: dt.datetime) -> None:
        """End the device's open rentals: expired ones at their expiry, a live one now."""
        open_rentals = session.scalars(
            select(Rental).where(Rental.device_id == device_id, Rental.ended_at.is_(None)))
        for rental in open_rentals:
            rental.ended_at = min(now, rental.expires_at)
        session.flush()

    # ------------------------------------------------------------------ devices

    def create_device(self, body: schemas.DeviceCreate) -> dict[str, Any]:
        token = new_device_token()
        now = self.clock()
        with self.db.writing() as session:
            device = Device(id=str(uuid.uuid4()), name=body.name, description=body.description,
                            owner=body.owner, token_hash=hash_token(token), created_at=now)
            session.add(device)
            session.flush()
            view = device_view(device, None, self.settings, now)
        return {"id": device.id, "device_token": token, "device": view}

    def get_device(self, device_id: str) -> dict[str, Any]:
        now = self.clock()
        with self.db.reading() as session:
            return self._view(session, self._device(session, device_id), now)

    def delete_device(self, device_id: str) -> None:
        now = self.clock()
        with self.db.writing() as session:
            device = self._device(session, device_id)
            self._close_open_rentals(session, device.id, now)
            session.execute(update(Rental).where(Rental.device_id == device.id).values(device_id=None))
            self._release_ports(session, device, now)
            session.delete(device)
        self.lease_changed(device_id)

    def _release_ports(self, session: Session, device: Device, now: dt.datetime) -> None:
        for kind, port in (("tunnel", device.remote_port), ("web", device.web_remote_port)):
            if port is not None:
                session.merge(ReleasedPort(kind=kind, port=port, released_at=now))

    def list_devices(self, query: DeviceQuery) -> dict[str, Any]:
        now = self.clock()
        statement = self._filtered(select(Device), query, now).order_by(Device.id).limit(query.limit + 1)
        with self.db.reading() as session:
            devices = list(session.scalars(statement))
            more = len(devices) > query.limit
            devices = devices[:query.limit]
            leases = self._active_rentals_of(session, [d.id for d in devices], now)
            items = [device_view(d, leases.get(d.id), self.settings, now) for d in devices]
        next_cursor = encode_cursor(devices[-1].id) if more and devices else None
        return {"items": items, "next_cursor": next_cursor}

    def _filtered(self, statement: Select, query: DeviceQuery, now: dt.datetime) -> Select:
        if query.cursor is not None:
            statement = statement.where(Device.id > decode_cursor(query.cursor))
        if query.owner is not None:
            statement = statement.where(Device.owner == query.owner)
        if query.architecture is not None:
            statement = statement.where(Device.architecture == query.architecture)
        if query.status is not None:
            statement = statement.where(self._status_condition(query.status, now))
        if query.rented is not None:
            rented = exists().where(Rental.device_id == Device.id, _active_condition(now))
            statement = statement.where(rented if query.rented else ~rented)
        return statement

    def _status_condition(self, status: str, now: dt.datetime) -> Any:
        cutoff = now - dt.timedelta(seconds=self.settings.offline_after_s)
        if status == "new":
            return Device.last_checkin.is_(None)
        if status == "online":
            return Device.last_checkin >= cutoff
        return Device.last_checkin < cutoff

    def _active_rentals_of(self, session: Session, device_ids: list[str], now: dt.datetime) -> dict[str, Rental]:
        if not device_ids:
            return {}
        rentals = session.scalars(
            select(Rental).where(Rental.device_id.in_(device_ids), _active_condition(now)))
        return {rental.device_id: rental for rental in rentals}

    # ------------------------------------------------------------------ device side

    def register(self, device_id: str, body: schemas.RegisterRequest) -> dict[str, Any]:
        for attempt in range(1, PORT_ALLOCATION_ATTEMPTS + 1):
            try:
                return self._register_once(device_id, body)
            except IntegrityError:
                if attempt == PORT_ALLOCATION_ATTEMPTS:
                    raise conflict("port_conflict", "could not allocate unique tunnel ports; retry") from None
        raise AssertionError("unreachable")

    def _register_once(self, device_id: str, body: schemas.RegisterRequest) -> dict[str, Any]:
        now = self.clock()
        with self.db.writing() as session:
            device = self._device(session, device_id)
            device.facts = body.facts.model_dump(exclude_none=True)
            device.architecture = body.facts.architecture
            device.tunnel_public_key = body.tunnel_public_key
            if device.registered_at is None:
                device.registered_at = now
            if device.remote_port is None:
                device.remote_port = self._free_port(session, "tunnel", Device.remote_port, self.settings.port_range)
            if self.settings.web_enabled and device.web_remote_port is None:
                device.web_remote_port = self._free_port(session, "web", Device.web_remote_port,
                                                         self.settings.web_port_range)
            session.flush()
            view = self._view(session, device, now)
        return {"device": view, "tunnel": view["tunnel"]}

    def assign_missing_web_ports(self) -> int:
        """Give registered devices without a web port one (web hosting turned on after they registered:
        their agents do not register again while nothing changed). Returns how many were given one."""
        if not self.settings.web_enabled:
            return 0
        with self.db.writing() as session:
            devices = list(session.scalars(select(Device).where(Device.registered_at.is_not(None),
                                                                Device.web_remote_port.is_(None))
                                           .order_by(Device.id)))
            for device in devices:
                device.web_remote_port = self._free_port(session, "web", Device.web_remote_port,
                                                         self.settings.web_port_range)
                session.flush()
        return len(devices)

    def _free_port(self, session: Session, kind: str, column: Any, port_range: tuple[int, int]) -> int:
        low, high = port_range
        assigned = set(session.scalars(select(column).where(column.between(low, high))))
        quarantined = set(session.scalars(select(ReleasedPort.port).where(
            ReleasedPort.kind == kind, ReleasedPort.port.between(low, high),
            ReleasedPort.released_at > self.clock() - dt.timedelta(seconds=self.settings.port_quarantine_s))))
        port = lowest_free_port(sorted(assigned | quarantined), low, high)
        if port is None:
            raise ApiError(503, PORT_RANGE_EXHAUSTED[kind],
                           f"every {kind} port of {low}-{high} is assigned or quarantined after a device was deleted")
        return port

    def checkin(self, device_id: str, token_hash: str, body: schemas.CheckinRequest | None) -> dict[str, Any]:
        """Record the heartbeat (and what the device observes) of the device whose token hashes to `token_hash`
        (401 for no device, 403 for another one); the check-in answer.

        One short transaction: the device and its active rental in one SELECT, then one UPDATE of the columns
        that changed (the heartbeat always; observed and the keys only when they differ: the ORM compares).
        Without receipts it is not serialised with this process's other writes on PostgreSQL (see
        `Database.writing`): it writes its own device row, and its rental's host key.
        """
        now = self.clock()
        checked = self._check_receipts(device_id, token_hash, body)
        try:
            with self.db.writing(exclusive=bool(checked)) as session:
                device, active = self._checking_in(session, device_id, token_hash, now)
                device.last_checkin = now
                if body is not None and body.observed is not None:
                    device.observed = body.observed
                if body is not None and body.receipt_public_key is not None:
                    device.receipt_public_key = body.receipt_public_key
                acknowledged, refused = self._store_receipts(session, device, checked, now)
                self._store_host_key(active, body)
                answer = checkin_view(active, self.settings, now)
        except StaleDataError:   # the device was deleted between the SELECT and the UPDATE
            raise unauthorized("invalid token") from None
        return dict(answer, receipts_acknowledged=acknowledged, receipts_refused=refused)

    @staticmethod
    def _checking_in(session: Session, device_id: str, token_hash: str,
                     now: dt.datetime) -> tuple[Device, Rental | None]:
        """The device of the token, with only the columns a check-in writes, and its active rental."""
        query = (select(Device, Rental)
                 .options(load_only(Device.id, Device.observed, Device.receipt_public_key, Device.last_checkin))
                 .outerjoin(Rental, and_(Rental.device_id == Device.id, _active_condition(now)))
                 .where(Device.token_hash == token_hash))
        row = session.execute(query).first()
        require_device(device_caller(None if row is None else row.Device.id), device_id)
        return row.Device, row.Rental

    @staticmethod
    def _store_host_key(rental: Rental | None, body: schemas.CheckinRequest | None) -> None:
        """Keep the reported host key on the device's current rental only: the key must name that rental in
        observed.lease_id (a key for an ended or another lease is ignored, never stored elsewhere)."""
        if rental is None or body is None or body.host_public_key is None:
            return
        if (body.observed or {}).get("lease_id") != rental.id:
            return
        if rental.ssh_host_key != body.host_public_key:
            rental.ssh_host_key = body.host_public_key

    def checkin_answer(self, device_id: str) -> dict[str, Any]:
        """The check-in answer as it is now, recording nothing (a held check-in's answer, which carries
        the receipts fields of the check-in itself). A device deleted meanwhile has no lease."""
        now = self.clock()
        with self.db.reading() as session:
            return checkin_view(self._active_rental(session, device_id, now), self.settings, now)

    # ------------------------------------------------------------------ wipe receipts

    def _check_receipts(self, device_id: str, token_hash: str,
                        body: schemas.CheckinRequest | None) -> list[dict[str, Any]]:
        """Parse and verify the reported receipts (outside the write lock: ssh-keygen runs for each), once the
        token is the device's.

        Each is {lease_id, fields, item, error}: error None for a verified receipt of this device.
        A receipt ssh-keygen could not check is left out (neither acknowledged nor refused).
        """
        if body is None or not body.receipts:
            return []
        with self.db.reading() as session:
            device = session.scalars(select(Device).where(Device.token_hash == token_hash)).first()
            require_device(device_caller(None if device is None else device.id), device_id)
            key = device.receipt_public_key if body.receipt_public_key is None else body.receipt_public_key
        checked = []
        for item in body.receipts:
            entry: dict[str, Any] = {"lease_id": None, "fields": None, "item": item, "error": None}
            try:
                entry["fields"] = fields = receipts.parse(item.receipt)
                entry["lease_id"] = fields["lease_id"]
                if fields["device_id"] != device_id:
                    raise receipts.ReceiptRefused("foreign_receipt")
                if key is None:
                    raise receipts.ReceiptRefused("no_receipt_key")
                if not receipts.verify(device_id, key, item.receipt, item.signature):
                    raise receipts.ReceiptRefused("bad_signature")
            except receipts.ReceiptRefused as exc:
                entry["lease_id"] = entry["lease_id"] or exc.lease_id
                entry["error"] = exc.error
            except OSError:
                continue
            entry["key"] = key
            checked.append(entry)
        return checked

    def _store_receipts(self, session: Session, device: Device, checked: list[dict[str, Any]],
                        now: dt.datetime) -> tuple[list[str], list[dict[str, Any]]]:
        """(acknowledged lease ids, refused [{lease_id, error}]); the first receipt of a lease is kept."""
        acknowledged: list[str] = []
        refused: list[dict[str, Any]] = []
        for entry in checked:
            lease_id, error = entry["lease_id"], entry["error"]
            if error is None:
                rental = session.get(Rental, lease_id)
                if rental is None or rental.device_id != device.id:
                    error = "foreign_lease"
            if error is not None:
                refused.append({"lease_id": lease_id, "error": error})
                continue
            if session.get(WipeReceipt, lease_id) is None:
                session.add(WipeReceipt(rental_id=lease_id, device_id=device.id, receipt=entry["item"].receipt,
                                        signature=entry["item"].signature, public_key=entry["key"],
                                        received_at=now))
                session.flush()
            if lease_id not in acknowledged:
                acknowledged.append(lease_id)
        return acknowledged, refused

    def get_receipt(self, rental_id: str) -> dict[str, Any]:
        with self.db.reading() as session:
            self._rental(session, rental_id)
            receipt = session.get(WipeReceipt, rental_id)
            if receipt is None:
                raise ApiError(404, "not_found", "no wipe receipt for this rental (yet): the device reports it "
                                                 "at its first check-in after the wipe")
            return receipt_view(receipt)

    # ------------------------------------------------------------------ rentals

    def create_rental(self, body: schemas.RentalCreate) -> dict[str, Any]:
        # A conflict is a web hostname taken already or another process's new lease on the
        # device; a retry draws a new hostname and checks the device again.
        for attempt in range(1, RENTAL_ATTEMPTS + 1):
            try:
                rental = self._create_rental_once(body)
                self.lease_changed(body.device_id)
                return rental
            except IntegrityError:
                if attempt == RENTAL_ATTEMPTS:
                    raise conflict("rental_conflict", "could not store the rental; retry") from None
        raise AssertionError("unreachable")

    def _create_rental_once(self, body: schemas.RentalCreate) -> dict[str, Any]:
        now = self.clock()
        with self.db.writing() as session:
            device = self._device(session, body.device_id)
            self._check_rentable(session, device, now)
            limits = dict(DEFAULT_LIMITS, **(body.limits.given() if body.limits else {}))
            check_limits_fit(limits, current_facts(device), self.settings)
            self._close_open_rentals(session, device.id, now)
            rental = self._new_rental(body, device, limits, now)
            session.add(rental)
            session.flush()
            return rental_view(rental, device, self.settings, now)

    def _check_rentable(self, session: Session, device: Device, now: dt.datetime) -> None:
        view = self._view(session, device, now)
        if not view["registered"]:
            raise conflict("device_not_rentable", "the device is not registered")
        if view["status"] != "online":
            raise conflict("device_not_rentable", f"the device is {view['status']}, not online")
        unenforced = unenforced_limits(device.facts, REQUIRED_LIMITS)
        if unenforced:
            raise conflict("device_cannot_enforce_limits",
                           f"the device reports that it cannot enforce {' and '.join(unenforced)} limits "
                           "(facts.enforcement): its owner must fix it (see its problems) and register it again")
        if view["lease"] is not None:
            raise conflict("device_not_rentable", "the device has a lease already")

    def _new_rental(self, body: schemas.RentalCreate, device: Device, limits: dict[str, Any],
                    now: dt.datetime) -> Rental:
        expires_at = now.replace(microsecond=0) + dt.timedelta(seconds=body.duration_seconds())
        return Rental(id=str(uuid.uuid4()), device_id=device.id, renter=body.renter,
                      username=body.renter, ssh_authorized_keys=body.keys(),
                      image=body.image or self.settings.default_image, created_at=now,
                      expires_at=expires_at, web_hostname=self._web_hostname(body.renter), **limits)

    def _web_hostname(self, renter: str) -> str | None:
        if not self.settings.web_enabled:
            return None
        return f"{web_label(renter, self.label_suffix())}.{self.settings.web_domain}"

    def get_rental(self, rental_id: str) -> dict[str, Any]:
        now = self.clock()
        with self.db.reading() as session:
            rental = self._rental(session, rental_id)
            return self._rental_view(session, rental, now)

    def _rental_view(self, session: Session, rental: Rental, now: dt.datetime) -> dict[str, Any]:
        device = None if rental.device_id is None else session.get(Device, rental.device_id)
        return rental_view(rental, device, self.settings, now)

    def patch_rental(self, rental_id: str, body: schemas.RentalPatch) -> dict[str, Any]:
        now = self.clock()
        with self.db.writing() as session:
            rental = self._rental(session, rental_id)
            if rental.ended_at is not None or rental.expires_at <= now:
                raise conflict("rental_not_active", "the rental has ended or expired")
            keys = body.keys()
            if keys is not None:
                rental.ssh_authorized_keys = keys
            limits = body.limits.given() if body.limits else {}
            if limits:
                device = self._device(session, rental.device_id)
                check_limits_fit(limits, current_facts(device), self.settings)
            for name, value in limits.items():
                setattr(rental, name, value)
            session.flush()
            view = self._rental_view(session, rental, now)
        self.lease_changed(rental.device_id)
        return view

    def extend_rental(self, rental_id: str, body: schemas.RentalExtend) -> dict[str, Any]:
        """A later expires_at for the same rental (same lease id), for the renter it belongs to.

        A live rental can be extended; an expired one only within --extend-window of its expiry, and
        only while its device has not checked in since: such a device keeps the lease frozen (stopped,
        data kept) and resumes the same container when it hears of the extension, whereas a device
        that has checked in since has been told the lease was over and has wiped it.
        """
        now = self.clock()
        new_expiry = body.new_expiry()
        with self.db.writing() as session:
            rental = self._rental(session, rental_id)
            if rental.renter != body.renter:
                raise forbidden("the rental belongs to another renter")
            if rental.ended_at is not None or rental.device_id is None:
                raise conflict("rental_not_extendable", "the rental has ended")
            if rental.expires_at <= now:
                device = self._device(session, rental.device_id)
                if now - rental.expires_at > dt.timedelta(seconds=self.settings.extend_window_s):
                    raise conflict("rental_not_extendable", "the rental expired more than "
                                   f"{self.settings.extend_window_s} s ago")
                if device.last_checkin is not None and device.last_checkin >= rental.expires_at:
                    raise conflict("rental_not_extendable", "the device has checked in since the rental "
                                   "expired and has wiped it")
            if new_expiry <= rental.expires_at or new_expiry <= now:
                raise ApiError(422, "invalid_request", "expires_at must be later than the rental's "
                               f"{format_time(rental.expires_at)} and than now")
            if new_expiry > now + dt.timedelta(seconds=MAX_RENTAL_S):
                raise ApiError(422, "invalid_request", f"expires_at must be at most {MAX_RENTAL_S} s from now")
            rental.expires_at = new_expiry
            session.flush()
            return self._rental_view(session, rental, now)

    def end_rental(self, rental_id: str) -> dict[str, Any]:
        now = self.clock()
        with self.db.writing() as session:
            rental = self._rental(session, rental_id)
            ended_now = rental.ended_at is None
            if ended_now:
                rental.ended_at = min(now, rental.expires_at)
            session.flush()
            view = self._rental_view(session, rental, now)
        if ended_now and rental.device_id is not None:
            self.lease_changed(rental.device_id)
        return view

    # ------------------------------------------------------------------ web routes

    def list_routes(self, limit: int, cursor: str | None) -> dict[str, Any]:
        """Active leases with a hostname on registered devices with a web port, by hostname."""
        after = None if cursor is None else decode_cursor(cursor, CURSOR_HOSTNAME_RE, MAX_ROUTE_CURSOR_LEN)
        if not self.settings.web_enabled:
            return {"items": [], "next_cursor": None}
        now = self.clock()
        statement = (select(Rental, Device).join(Device, Rental.device_id == Device.id)
                     .where(_active_condition(now), Rental.web_hostname.is_not(None),
                            Device.web_remote_port.is_not(None), Device.registered_at.is_not(None))
                     .order_by(Rental.web_hostname).limit(limit + 1))
        if after is not None:
            statement = statement.where(Rental.web_hostname > after)
        with self.db.reading() as session:
            rows = session.execute(statement).all()
        return keyset_page([route_view(rental, device) for rental, device in rows], limit, "hostname")

    # ------------------------------------------------------------------ tunnel keys

    def list_tunnel_keys(self, limit: int, cursor: str | None) -> dict[str, Any]:
        """Every registered device's tunnel key and ports, by device id (what the tunnel server authorises)."""
        after = None if cursor is None else decode_cursor(cursor)
        statement = (select(Device)
                     .where(Device.registered_at.is_not(None), Device.tunnel_public_key.is_not(None),
                            Device.remote_port.is_not(None))
                     .order_by(Device.id).limit(limit + 1))
        if after is not None:
            statement = statement.where(Device.id > after)
        with self.db.reading() as session:
            devices = session.scalars(statement).all()
        return keyset_page([tunnel_key_view(device, self.settings) for device in devices], limit, "device_id")


def current_facts(device: Device) -> dict[str, Any]:
    """The registered facts, with the free disk the device reported at its last check-in (fresher: free
    space drifts, and devices register again only when something else changed)."""
    facts = dict(device.facts or {})
    free = (device.observed or {}).get("disk_free_gb")
    if isinstance(free, (int, float)) and not isinstance(free, bool) and 0 <= free <= 1_000_000:
        facts["disk_free_gb"] = free
    return facts


def device_offer(facts: dict[str, Any] | None, settings: Settings) -> dict[str, tuple[float, str]]:
    """What a device can give one lease, per limit: (amount, how it was reckoned).

    Registration stores every fact this needs; a limit whose fact is missing is not checked.
    """
    facts = facts or {}
    offers = {"memory_mb": _memory_offer(facts, settings), "cpus": _cpu_offer(facts),
              "disk_gb": _disk_offer(facts, settings)}
    return {name: offer for name, offer in offers.items() if offer is not None}


def _memory_offer(facts: dict[str, Any], settings: Settings) -> tuple[float, str] | None:
    total = facts.get("memory_mb")
    if not isinstance(total, int):
        return None
    memory = max(0, total - settings.memory_reserve_mb)
    return memory, f"{memory} MB ({total} MB minus a {settings.memory_reserve_mb} MB reserve)"


def _cpu_offer(facts: dict[str, Any]) -> tuple[float, str] | None:
    count = facts.get("cpu_count")
    if not isinstance(count, int):
        return None
    return count, f"{count} CPU" + ("" if count == 1 else "s")


def _disk_offer(facts: dict[str, Any], settings: Settings) -> tuple[float, str] | None:
    space, where = facts.get("disk_free_gb"), "free"
    if not isinstance(space, (int, float)):
        space, where = facts.get("disk_gb"), "disk"
    if not isinstance(space, (int, float)):
        return None
    reserve = settings.disk_reserve_gb
    disk = max(0.0, space - reserve)
    return disk, f"{_amount(disk)} GB ({_amount(space)} GB {where} minus a {_amount(reserve)} GB reserve)"


def check_limits_fit(limits: dict[str, Any], facts: dict[str, Any] | None, settings: Settings) -> None:
    """409 limits_exceed_device when memory, CPUs or disk ask more than the device offers."""
    offer = device_offer(facts, settings)
    for name in ("memory_mb", "cpus", "disk_gb"):
        if name in limits and name in offer and limits[name] > offer[name][0]:
            raise conflict("limits_exceed_device",
                           f"{name} {_amount(limits[name])} is more than the device offers: {offer[name][1]}")


def _amount(value: float) -> str:
    """28.099999999999998 -> '28.1', 4.0 -> '4', 3537 -> '3537'."""
    return f"{value:.10g}"
