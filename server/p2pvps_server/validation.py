"""Plain validators shared by the request models (no FastAPI, no database)."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
import struct
from typing import Any

USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
ARCHITECTURE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
IMAGE_RE = re.compile(
    r"^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*(?::[0-9]{1,5})?/)?"
    + _IMAGE_COMPONENT + r"(?:/" + _IMAGE_COMPONENT + r"){0,4}"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[a-f0-9]{64})?$"
)
MAX_IMAGE_LEN = 255
MAX_KEY_LEN = 4096
MAX_KEYS = 16
MAX_COMMENT_LEN = 256
MAX_OBSERVED_BYTES = 4096
MAX_RENTAL_S = 30 * 24 * 3600   # a rental lasts at most 30 days from now, made or extended
KEY_TYPES = frozenset((
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
))
# What the tunnel server authorises (role p2pvps.fleet.tunnel_server): no RSA, no DSA.
TUNNEL_KEY_TYPES = frozenset(("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"))
_COMMENT_RE = re.compile(r"^[\x21-\x7e]+(?: [\x21-\x7e]+)*$")

# Accounts of Debian base images or with a meaning on a device: never a renter's login.
RESERVED_USERNAMES = frozenset((
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news",
    "uucp", "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "nogroup",
    "_apt", "systemd-network", "systemd-resolve", "systemd-timesync", "systemd-coredump",
    "messagebus", "sshd", "syslog", "polkitd", "avahi", "ntp", "statd", "tss",
    "adm", "tty", "disk", "kmem", "dialout", "fax", "voice", "cdrom", "floppy", "tape",
    "sudo", "audio", "dip", "operator", "src", "shadow", "utmp", "video", "sasl",
    "plugdev", "staff", "users", "netdev", "input", "render", "kvm", "crontab",
    "docker", "lxd", "admin", "administrator", "halt", "shutdown", "ftp", "postgres",
    "mysql", "pi", "ubuntu", "debian", "tunnel", "p2pvps", "renter", "ansible", "git",
))


# RFC 3339 with an offset (Z or +-HH:MM); a time without one is refused, never guessed.
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})$")


def check_time(value: str) -> dt.datetime:
    """An aware UTC datetime from an RFC 3339 time with any offset, fractions of a second dropped."""
    if not TIME_RE.fullmatch(value):
        raise ValueError("must be an RFC 3339 time with an offset, like 2026-12-01T20:00:00Z")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"is not a valid time: {exc}") from None
    return parsed.astimezone(dt.timezone.utc).replace(microsecond=0)


def check_text(value: str, what: str) -> str:
    """Printable single-line text (no control characters)."""
    if not value.isprintable():
        raise ValueError(f"{what} must not contain control characters or line breaks")
    return value


def check_username(value: str) -> str:
    if not USERNAME_RE.fullmatch(value):
        raise ValueError("must be a login name matching ^[a-z_][a-z0-9_-]{0,31}$")
    if value in RESERVED_USERNAMES:
        raise ValueError(f"'{value}' is a reserved system account name")
    return value


def check_image(value: str) -> str:
    if len(value) > MAX_IMAGE_LEN or not IMAGE_RE.fullmatch(value):
        raise ValueError("must be a Docker image reference like name[:tag][@sha256:digest]")
    return value


def _key_blob_type(body: str) -> str:
    try:
        blob = base64.b64decode(body.encode("ascii"), validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        if len(blob) < 4 + length + 16:
            raise ValueError("key body too short")
        return blob[4:4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeError, ValueError) as exc:
        raise ValueError("the key body is not valid base64 key data") from exc


def check_ssh_public_key(value: str) -> str:
    """One plain OpenSSH public key line: TYPE BASE64 [comment]; returned normalised."""
    if len(value) > MAX_KEY_LEN:
        raise ValueError(f"a public key line has at most {MAX_KEY_LEN} characters")
    if not value.isprintable():
        raise ValueError("a public key must be one line without control characters")
    parts = value.strip().split(" ")
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise ValueError("must be a public key line 'TYPE BASE64 [comment]' with TYPE one of "
                         + ", ".join(sorted(KEY_TYPES)) + " (no key options)")
    key_type, body, comment = parts[0], parts[1], " ".join(parts[2:])
    if _key_blob_type(body) != key_type:
        raise ValueError(f"the key body does not hold a {key_type} key")
    if comment and (len(comment) > MAX_COMMENT_LEN or not _COMMENT_RE.fullmatch(comment)):
        raise ValueError("the key comment must be printable ASCII words of at most "
                         f"{MAX_COMMENT_LEN} characters")
    return " ".join([key_type, body] + ([comment] if comment else []))


def check_tunnel_public_key(value: str) -> str:
    """A device's tunnel key: a public key of a type the tunnel server authorises."""
    key = check_ssh_public_key(value)
    if key.split(" ", 1)[0] not in TUNNEL_KEY_TYPES:
        raise ValueError("a tunnel key must be one of " + ", ".join(sorted(TUNNEL_KEY_TYPES))
                         + " (the tunnel server refuses other types)")
    return key


def check_receipt_public_key(value: str) -> str:
    """A device's wipe-receipt key: ssh-ed25519 only."""
    key = check_ssh_public_key(value)
    if not key.startswith("ssh-ed25519 "):
        raise ValueError("a receipt key must be an ssh-ed25519 key")
    return key


HOST_KEY_RE = re.compile(r"^ssh-ed25519 [A-Za-z0-9+/]{68}$")
# An ssh-ed25519 public key blob: string "ssh-ed25519", string of the 32-byte key.
_ED25519_HEAD = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32)
MAX_HOST_KEY_LEN = 128


def check_host_public_key(value: str) -> str:
    """A lease's SSH host key as the device reports it: exactly one 'ssh-ed25519 BASE64' line (no options,
    no comment, surrounding white space dropped); the blob must be a well-formed ed25519 key."""
    if len(value) > MAX_HOST_KEY_LEN:
        raise ValueError(f"a host key line has at most {MAX_HOST_KEY_LEN} characters")
    key = value.strip()
    if not HOST_KEY_RE.fullmatch(key):
        raise ValueError("must be one line 'ssh-ed25519 BASE64' (an ed25519 public key without comment)")
    try:
        blob = base64.b64decode(key.split(" ")[1].encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key body is not valid base64") from None
    if len(blob) != len(_ED25519_HEAD) + 32 or not blob.startswith(_ED25519_HEAD):
        raise ValueError("the key body does not hold an ssh-ed25519 key")
    return key


def host_key_fingerprint(key: str | None) -> str | None:
    """SHA256:<base64 without padding> of a public key line, as `ssh-keygen -lf` prints it."""
    if key is None:
        return None
    blob = base64.b64decode(key.split(" ")[1].encode("ascii"))
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def check_key_list(values: list[str]) -> list[str]:
    if not values:
        raise ValueError("at least one public key is needed")
    if len(values) > MAX_KEYS:
        raise ValueError(f"at most {MAX_KEYS} public keys")
    keys: list[str] = []
    for value in values:
        key = check_ssh_public_key(value)
        if key not in keys:
            keys.append(key)
    return keys


def check_observed(value: dict[str, Any]) -> dict[str, Any]:
    """A small free-form JSON object (finite numbers only)."""
    try:
        encoded = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError("must be a JSON object without NaN or Infinity") from exc
    if len(encoded) > MAX_OBSERVED_BYTES:
        raise ValueError(f"must be at most {MAX_OBSERVED_BYTES} bytes of JSON")
    return value
