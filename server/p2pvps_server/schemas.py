"""Request bodies: strict pydantic models (booleans are not numbers, NaN/inf rejected)."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from p2pvps_server import receipts
from p2pvps_server import validation as v

STRICT = dict(strict=True, allow_inf_nan=False, str_max_length=4096)

Name = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(lambda s: v.check_text(s, "name"))]
Description = Annotated[str, Field(max_length=500), AfterValidator(lambda s: v.check_text(s, "description"))]
Owner = Annotated[str, Field(min_length=1, max_length=64),
                  AfterValidator(lambda s: _pattern(s, v.OWNER_RE, "owner"))]
PublicKey = Annotated[str, Field(max_length=v.MAX_KEY_LEN), AfterValidator(v.check_ssh_public_key)]
HostPublicKey = Annotated[str, Field(max_length=v.MAX_HOST_KEY_LEN), AfterValidator(v.check_host_public_key)]
ReceiptPublicKey = Annotated[str, Field(max_length=v.MAX_KEY_LEN), AfterValidator(v.check_receipt_public_key)]
TunnelPublicKey = Annotated[str, Field(max_length=v.MAX_KEY_LEN), AfterValidator(v.check_tunnel_public_key)]
KeyList = Annotated[list[str], Field(max_length=v.MAX_KEYS), AfterValidator(v.check_key_list)]
Login = Annotated[str, Field(max_length=32), AfterValidator(v.check_username)]
Image = Annotated[str, Field(max_length=v.MAX_IMAGE_LEN), AfterValidator(v.check_image)]
ShortText = Annotated[str, Field(min_length=1, max_length=256),
                      AfterValidator(lambda s: v.check_text(s, "text"))]


def _pattern(value: str, regex: Any, what: str) -> str:
    if not regex.fullmatch(value):
        raise ValueError(f"{what} must match {regex.pattern}")
    return value


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", **STRICT)

    name: Name
    description: Description = ""
    owner: Owner = "default"


ProblemText = Annotated[str, Field(max_length=500), AfterValidator(lambda s: v.check_text(s, "problem"))]
DriverName = Annotated[str, Field(min_length=1, max_length=32), AfterValidator(lambda s: v.check_text(s, "driver"))]


class Enforcement(BaseModel):
    """Which renter limits the device's Docker Engine enforces (module limits_info); unknown keys are ignored.

    A limit that is missing is not known; the server refuses rentals on a device that reports
    memory or pids as false."""

    model_config = ConfigDict(extra="ignore", **STRICT)

    memory: bool | None = None
    swap: bool | None = None
    cpu: bool | None = None
    pids: bool | None = None
    disk: bool | None = None
    cgroup_version: DriverName | None = None
    cgroup_driver: DriverName | None = None
    storage_driver: DriverName | None = None
    swap_on_sd_card: bool | None = None
    problems: list[ProblemText] = Field(default_factory=list, max_length=16)


class Facts(BaseModel):
    """Real hardware facts of a device; unknown facts are ignored."""

    model_config = ConfigDict(extra="ignore", **STRICT)

    memory_mb: int = Field(gt=0, le=16 * 1024 * 1024)
    disk_gb: float = Field(gt=0, le=1_000_000)
    cpu_model: ShortText
    cpu_count: int = Field(gt=0, le=4096)
    architecture: Annotated[str, Field(max_length=32),
                            AfterValidator(lambda s: _pattern(s, v.ARCHITECTURE_RE, "architecture"))]
    os: ShortText
    docker_version: Annotated[str, Field(min_length=1, max_length=64),
                              AfterValidator(lambda s: v.check_text(s, "docker_version"))]
    disk_free_gb: float | None = Field(
        default=None, ge=0, le=1_000_000,
        description="Free space where lease disks live, GB; lease disk limits are checked against it "
                    "(else against disk_gb).")
    enforcement: Enforcement | None = Field(
        default=None,
        description="Which renter limits the device can enforce; a device that reports memory or pids "
                    "false is not rented out (409 device_cannot_enforce_limits). Missing: not known, rentable.")


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", **STRICT)

    facts: Facts
    tunnel_public_key: TunnelPublicKey


class ReceiptIn(BaseModel):
    """A signed wipe receipt: the exact JSON text the device signed and its armored SSH signature."""

    model_config = ConfigDict(extra="ignore", **STRICT)

    receipt: Annotated[str, Field(min_length=2, max_length=receipts.MAX_RECEIPT_LEN)]
    signature: Annotated[str, Field(min_length=1, max_length=receipts.MAX_SIGNATURE_LEN)]


class CheckinRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", **STRICT)

    observed: Annotated[dict[str, Any], AfterValidator(v.check_observed)] | None = None
    receipt_public_key: ReceiptPublicKey | None = Field(
        default=None, description="the ed25519 key the device signs its wipe receipts with")
    host_public_key: HostPublicKey | None = Field(
        default=None, description="the SSH host key ('ssh-ed25519 BASE64') the device made for the renter "
                                  "container of the lease in observed.lease_id; stored on that rental when it "
                                  "is the device's current one, shown to its renter with its fingerprint")
    receipts: list[ReceiptIn] | None = Field(
        default=None, max_length=receipts.MAX_RECEIPTS,
        description="signed wipe receipts not acknowledged yet; the answer acknowledges them by lease id")
    lease_etag: str | None = Field(
        default=None, max_length=64, pattern=r"^[\x21-\x7e]+$",
        description="lease_etag of the check-in answer the device runs; with ?wait= the answer is held "
                    "while the device's lease still has this etag")


class LimitsIn(BaseModel):
    """Resource limits of a lease; missing ones take the server defaults (or current values)."""

    model_config = ConfigDict(extra="forbid", **STRICT)

    memory_mb: int | None = Field(default=None, ge=64, le=65536)
    cpus: float | None = Field(default=None, ge=0.1, le=64)
    pids: int | None = Field(default=None, ge=16, le=65536)
    disk_gb: int | None = Field(default=None, ge=1, le=2048)

    def given(self) -> dict[str, Any]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


class _KeysMixin(BaseModel):
    ssh_public_key: PublicKey | None = None
    ssh_public_keys: KeyList | None = None

    def keys(self) -> list[str] | None:
        if self.ssh_public_key is None and self.ssh_public_keys is None:
            return None
        merged = list(self.ssh_public_keys or [])
        if self.ssh_public_key is not None and self.ssh_public_key not in merged:
            merged.insert(0, self.ssh_public_key)
        if len(merged) > v.MAX_KEYS:
            raise ValueError(f"at most {v.MAX_KEYS} public keys")
        return merged


class RentalCreate(_KeysMixin):
    model_config = ConfigDict(extra="forbid", **STRICT)

    device_id: Annotated[str, Field(min_length=1, max_length=64)]
    renter: Login
    hours: float | None = Field(default=None, gt=0, le=v.MAX_RENTAL_S / 3600)
    duration_s: int | None = Field(default=None, ge=10, le=v.MAX_RENTAL_S)
    limits: LimitsIn | None = None
    image: Image | None = None

    @model_validator(mode="after")
    def _one_key_and_one_duration(self) -> RentalCreate:
        if self.keys() is None:
            raise ValueError("give ssh_public_key or ssh_public_keys")
        if (self.hours is None) == (self.duration_s is None):
            raise ValueError("give exactly one of hours and duration_s")
        return self

    def duration_seconds(self) -> int:
        if self.duration_s is not None:
            return self.duration_s
        return max(1, round(self.hours * 3600))


class RentalExtend(BaseModel):
    """A later end for a rental, asked by the renter it belongs to (the shop passes their login)."""

    model_config = ConfigDict(extra="forbid", **STRICT)

    renter: Login
    expires_at: Annotated[str, Field(max_length=40)]

    def new_expiry(self) -> dt.datetime:
        return v.check_time(self.expires_at)

    @model_validator(mode="after")
    def _valid_time(self) -> RentalExtend:
        self.new_expiry()
        return self


class RentalPatch(_KeysMixin):
    model_config = ConfigDict(extra="forbid", **STRICT)

    limits: LimitsIn | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> RentalPatch:
        if self.keys() is None and self.limits is None:
            raise ValueError("give ssh_public_keys (or ssh_public_key) and/or limits")
        return self
