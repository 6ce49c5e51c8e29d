"""Answer models: the OpenAPI description of the JSON that views.py builds (documentation only).

The routes keep returning the views' dicts; these models are named in `responses=` so that
/openapi.json and /docs show every answer with its fields.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


def _time() -> Any:
    return Field(description="ISO 8601 UTC with a 'Z', e.g. 2025-01-31T12:00:00Z")


def _web() -> Any:
    return Field(description="the lease's web address; null while web hosting is off")


class Tunnel(BaseModel):
    """Where and how the device opens its reverse SSH tunnel."""

    host: str = Field(description="tunnel server host")
    port: int = Field(description="tunnel server SSH port")
    user: str = Field(description="tunnel server account")
    host_key: str | None = Field(description="tunnel server host public key to pin, or null")
    remote_port: int = Field(description="port on the tunnel server forwarded to the renter's sshd; unique")
    web_remote_port: int | None = Field(
        description="port on the tunnel server (loopback) forwarded to the renter's web port; unique; "
                    "null while web hosting is off or before the device registers again")


class DeviceLease(BaseModel):
    id: str
    renter: str
    username: str
    expires_at: str = _time()


class Device(BaseModel):
    id: str
    name: str
    description: str
    owner: str
    status: Literal["new", "online", "offline"]
    rentable: bool
    registered: bool
    facts: dict[str, Any] | None = Field(description="the registered facts, or null")
    unenforced_limits: list[str] = Field(
        description="renter limits (memory, swap, cpu, pids, disk) the device reported it cannot enforce "
                    "(facts.enforcement); with memory or pids among them the device is not rentable")
    tunnel_public_key: str | None
    receipt_public_key: str | None = Field(
        description="the ed25519 key the device signs its wipe receipts with (reported at check-in), or null")
    tunnel: Tunnel | None = Field(description="null until the device registers")
    last_checkin: str | None = _time()
    created_at: str = _time()
    registered_at: str | None = _time()
    lease: DeviceLease | None = Field(description="the active lease, or null")


class DeviceCreated(BaseModel):
    id: str
    device_token: str = Field(description="the device's token, in this answer only")
    device: Device


class DevicePage(BaseModel):
    items: list[Device]
    next_cursor: str | None = Field(description="pass back as cursor for the next page; null on the last")


class Registered(BaseModel):
    device: Device
    tunnel: Tunnel


class Limits(BaseModel):
    memory_mb: int
    cpus: float
    pids: int
    disk_gb: int


class Web(BaseModel):
    """A lease's web address, served by the web gateway through the device's web port."""

    hostname: str = Field(description="<label>.<web-domain>, e.g. alice-k3j9xq.web.test; unique across all rentals")
    url: str = Field(description="<web-scheme>://<hostname>/")


class Lease(BaseModel):
    """The lease a device should run."""

    id: str
    username: str
    ssh_authorized_keys: list[str]
    image: str
    expires_at: str = _time()
    limits: Limits
    web: Web | None = _web()


class RefusedReceipt(BaseModel):
    lease_id: str | None
    error: Literal["malformed_receipt", "foreign_receipt", "foreign_lease", "no_receipt_key", "bad_signature"]


class CheckedIn(BaseModel):
    lease: Lease | None = Field(description="the active lease, or null")
    lease_etag: str = Field(description="a hash of `lease` (null included); send it back as lease_etag with "
                                        "?wait= to have the next check-in held until the lease changes")
    checkin_interval_s: int
    server_time: str = _time()
    receipts_acknowledged: list[str] = Field(
        description="lease ids of the reported wipe receipts that are stored (verified); the device forgets them")
    receipts_refused: list[RefusedReceipt] = Field(
        description="reported wipe receipts refused for good (not this device's, bad signature, malformed)")


class Receipt(BaseModel):
    """A device's signed receipt of the wipe of a rental's container, volumes and disk image."""

    rental_id: str
    device_id: str
    receipt: str = Field(description="the exact JSON text the device signed (save it without a trailing newline)")
    signature: str = Field(description="armored SSH signature (ssh-keygen -Y sign) of `receipt`")
    public_key: str = Field(description="the device's receipt key that verified it when it arrived")
    namespace: str = Field(description="p2pvps-wipe-receipt")
    principal: str = Field(description="the signer identity for ssh-keygen -Y verify -I (the device id)")
    allowed_signers: str = Field(description="an allowed_signers line for ssh-keygen -Y verify -f")
    verify_command: str
    wipe: dict[str, Any] = Field(description="the receipt's fields: lease_id, device_id, containers, volumes, "
                                             "disk_image, bytes, wiped_at, reason, kind, format")
    received_at: str = _time()


class RentalTunnel(BaseModel):
    host: str = Field(description="tunnel server host")
    remote_port: int | None = Field(description="the device's SSH port on the tunnel server")
    web_remote_port: int | None = Field(description="the device's web port on the tunnel server, or null")


class Rental(BaseModel):
    id: str
    device_id: str | None
    renter: str
    username: str
    ssh_authorized_keys: list[str]
    image: str
    limits: Limits
    created_at: str = _time()
    expires_at: str = _time()
    ended_at: str | None = _time()
    active: bool
    tunnel: RentalTunnel
    web: Web | None = _web()
    ssh_host_key: str | None = Field(
        default=None, description="the SSH host key ('ssh-ed25519 BASE64') the device reported for the lease's "
                                  "renter container; null until it did")
    ssh_host_key_fingerprint: str | None = Field(
        default=None, description="its SHA256 fingerprint as ssh-keygen -lf prints it ('SHA256:...'), computed "
                                  "by the server; the renter checks it at the first login")


class Route(BaseModel):
    """Send requests for `hostname` to 127.0.0.1:`port` on the tunnel server."""

    hostname: str = Field(description="the lease's hostname")
    port: int = Field(description="the device's web_remote_port")
    device_id: str
    lease_id: str
    expires_at: str = _time()


class RoutePage(BaseModel):
    items: list[Route] = Field(description="ordered by hostname")
    next_cursor: str | None = Field(description="pass back as cursor for the next page; null on the last")


class TunnelKey(BaseModel):
    """Authorise `key` on the tunnel server to listen on `port` (and on localhost:`web_port`) only."""

    device_id: str
    key: str = Field(description="the device's tunnel public key (ssh-ed25519 or ecdsa-sha2-nistp*)")
    port: int = Field(description="the device's remote_port")
    web_port: int | None = Field(description="the device's web_remote_port; null without web hosting")


class TunnelKeyPage(BaseModel):
    items: list[TunnelKey] = Field(description="ordered by device id")
    next_cursor: str | None = Field(description="pass back as cursor for the next page; null on the last")
