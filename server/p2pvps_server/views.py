"""JSON shapes of devices, tunnels, leases, rentals and web routes (contract v1)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from p2pvps_server import receipts
from p2pvps_server.db import UTC, Device, Rental, WipeReceipt
from p2pvps_server.settings import Settings
from p2pvps_server.validation import host_key_fingerprint


def format_time(value: dt.datetime | None) -> str | None:
    """ISO 8601 UTC with a 'Z': 2025-01-31T12:00:00Z (microseconds only when present)."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def device_status(device: Device, now: dt.datetime, offline_after_s: int) -> str:
    if device.last_checkin is None:
        return "new"
    if now - device.last_checkin <= dt.timedelta(seconds=offline_after_s):
        return "online"
    return "offline"


def is_active(rental: Rental, now: dt.datetime) -> bool:
    return rental.ended_at is None and rental.expires_at > now


def web_port(device: Device | None, settings: Settings) -> int | None:
    """The device's web port while web hosting is on (a port kept from an earlier run is not shown)."""
    if device is None or not settings.web_enabled:
        return None
    return device.web_remote_port


def tunnel_view(device: Device, settings: Settings) -> dict[str, Any] | None:
    if device.remote_port is None:
        return None
    return {
        "host": settings.resolved_tunnel_host,
        "port": settings.tunnel_port,
        "user": settings.tunnel_user,
        "host_key": settings.tunnel_host_key,
        "remote_port": device.remote_port,
        "web_remote_port": web_port(device, settings),
    }


def web_view(rental: Rental, settings: Settings) -> dict[str, str] | None:
    if not settings.web_enabled or rental.web_hostname is None:
        return None
    return {"hostname": rental.web_hostname, "url": f"{settings.web_scheme}://{rental.web_hostname}/"}


# Limits a device must enforce to be rented out (facts.enforcement): without them one renter can take the
# whole device down. The other limits the device reports are shown, not required.
REQUIRED_LIMITS = ("memory", "pids")
REPORTED_LIMITS = ("memory", "swap", "cpu", "pids", "disk")


def unenforced_limits(facts: dict[str, Any] | None, limits: tuple[str, ...] = REPORTED_LIMITS) -> list[str]:
    """The limits the device reported it cannot enforce (a device that reported nothing: none)."""
    enforcement = (facts or {}).get("enforcement")
    if not isinstance(enforcement, dict):
        return []
    return [name for name in limits if enforcement.get(name) is False]


def device_view(device: Device, lease: Rental | None, settings: Settings, now: dt.datetime) -> dict[str, Any]:
    status = device_status(device, now, settings.offline_after_s)
    registered = device.registered_at is not None
    return {
        "id": device.id,
        "name": device.name,
        "description": device.description,
        "owner": device.owner,
        "status": status,
        "rentable": (registered and status == "online" and lease is None
                     and not unenforced_limits(device.facts, REQUIRED_LIMITS)),
        "registered": registered,
        "facts": device.facts,
        "unenforced_limits": unenforced_limits(device.facts),
        "tunnel_public_key": device.tunnel_public_key,
        "receipt_public_key": device.receipt_public_key,
        "tunnel": tunnel_view(device, settings),
        "last_checkin": format_time(device.last_checkin),
        "created_at": format_time(device.created_at),
        "registered_at": format_time(device.registered_at),
        "lease": None if lease is None else {
            "id": lease.id,
            "renter": lease.renter,
            "username": lease.username,
            "expires_at": format_time(lease.expires_at),
        },
    }


def limits_view(rental: Rental) -> dict[str, Any]:
    return {"memory_mb": rental.memory_mb, "cpus": rental.cpus, "pids": rental.pids,
            "disk_gb": rental.disk_gb}


def lease_view(rental: Rental, settings: Settings) -> dict[str, Any]:
    """The desired lease as a device sees it in its check-in answer."""
    return {
        "id": rental.id,
        "username": rental.username,
        "ssh_authorized_keys": list(rental.ssh_authorized_keys),
        "image": rental.image,
        "expires_at": format_time(rental.expires_at),
        "limits": limits_view(rental),
        "web": web_view(rental, settings),
    }


def lease_etag(lease: dict[str, Any] | None) -> str:
    """A short hash of a check-in's lease part (null included): what a long-poll compares."""
    canonical = json.dumps(lease, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:32]


def checkin_view(lease: Rental | None, settings: Settings, now: dt.datetime) -> dict[str, Any]:
    """A check-in answer: the lease the device should run (or null), its etag, the interval, the time."""
    answer = None if lease is None else lease_view(lease, settings)
    return {"lease": answer, "lease_etag": lease_etag(answer), "checkin_interval_s": settings.checkin_interval_s,
            "server_time": format_time(now)}


def rental_view(rental: Rental, device: Device | None, settings: Settings, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": rental.id,
        "device_id": rental.device_id,
        "renter": rental.renter,
        "username": rental.username,
        "ssh_authorized_keys": list(rental.ssh_authorized_keys),
        "image": rental.image,
        "limits": limits_view(rental),
        "created_at": format_time(rental.created_at),
        "expires_at": format_time(rental.expires_at),
        "ended_at": format_time(rental.ended_at),
        "active": is_active(rental, now),
        "tunnel": {
            "host": settings.resolved_tunnel_host,
            "remote_port": None if device is None else device.remote_port,
            "web_remote_port": web_port(device, settings),
        },
        "web": web_view(rental, settings),
        # what the device reported for this lease's container: a renter checks it at the first login
        "ssh_host_key": rental.ssh_host_key,
        "ssh_host_key_fingerprint": host_key_fingerprint(rental.ssh_host_key),
    }


def route_view(rental: Rental, device: Device) -> dict[str, Any]:
    """One web gateway route: the lease's hostname to the device's web port on the tunnel server."""
    return {
        "hostname": rental.web_hostname,
        "port": device.web_remote_port,
        "device_id": device.id,
        "lease_id": rental.id,
        "expires_at": format_time(rental.expires_at),
    }


def tunnel_key_view(device: Device, settings: Settings) -> dict[str, Any]:
    """One device's entry on the tunnel server: its key may listen on its ports only."""
    return {
        "device_id": device.id,
        "key": device.tunnel_public_key,
        "port": device.remote_port,
        "web_port": web_port(device, settings),
    }


def receipt_view(receipt: WipeReceipt) -> dict[str, Any]:
    """A stored wipe receipt, with what `ssh-keygen -Y verify` needs to check it offline."""
    return {
        "rental_id": receipt.rental_id,
        "device_id": receipt.device_id,
        "receipt": receipt.receipt,
        "signature": receipt.signature,
        "public_key": receipt.public_key,
        "namespace": receipts.NAMESPACE,
        "principal": receipts.principal(receipt.device_id),
        "allowed_signers": receipts.allowed_signers(receipt.device_id, receipt.public_key),
        "verify_command": receipts.verify_command(receipt.device_id),
        "wipe": json.loads(receipt.receipt),
        "received_at": format_time(receipt.received_at),
    }
