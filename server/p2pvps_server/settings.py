"""Server settings: one frozen dataclass, filled by the CLI or by tests."""
from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

OPERATOR_TOKEN_ENV = "P2PVPS_OPERATOR_TOKEN"
OPERATOR_TOKEN_FILE = "operator_token"
GATEWAY_TOKEN_ENV = "P2PVPS_GATEWAY_TOKEN"
GATEWAY_TOKEN_FILE = "gateway_token"
DATABASE_FILE = "marketplace.db"
MIN_TOKEN_LEN = 16
WEB_SCHEMES = ("https", "http")
MAX_WEB_DOMAIN_LEN = 200
#: Longest long-poll a check-in may ask for (`?wait=`), seconds; the server may hold less (max_checkin_wait_s).
MAX_CHECKIN_WAIT_S = 600
DNS_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def parse_port_range(text: str) -> tuple[int, int]:
    """'20000-20999' -> (20000, 20999); ValueError when malformed or out of 1..65535."""
    low_text, sep, high_text = text.partition("-")
    if not sep or not low_text.strip().isdigit() or not high_text.strip().isdigit():
        raise ValueError(f"port range must look like LOW-HIGH, got {text!r}")
    low, high = int(low_text), int(high_text)
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"port range {low}-{high} must satisfy 1 <= LOW <= HIGH <= 65535")
    return low, high


def parse_web_domain(text: str) -> str:
    """A lower-case DNS name such as 'web.test' (one label is enough); ValueError otherwise."""
    if len(text) > MAX_WEB_DOMAIN_LEN or not all(DNS_LABEL_RE.fullmatch(label) for label in text.split(".")):
        raise ValueError("the web domain must be a lower-case DNS name: labels of a-z, 0-9 and '-' "
                         f"(not first or last), 1-63 characters each, at most {MAX_WEB_DOMAIN_LEN} in all")
    return text


def _overlap(first: tuple[int, int], second: tuple[int, int]) -> bool:
    return first[0] <= second[1] and second[0] <= first[1]


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str | None = None
    port_range: tuple[int, int] = (20000, 20999)
    offline_after_s: int = 300
    checkin_interval_s: int = 120
    tunnel_host: str | None = None
    tunnel_port: int = 22
    tunnel_user: str = "tunnel"
    tunnel_host_key: str | None = None
    default_image: str = "p2pvps/renter:latest"
    web_domain: str | None = None
    web_port_range: tuple[int, int] = (30000, 30999)
    web_scheme: str = "https"
    memory_reserve_mb: int = 256
    disk_reserve_gb: float = 1.0
    port_quarantine_s: int = 86400
    max_checkin_wait_s: int = 300
    # How long after its expiry a rental can still be extended, while its device has not checked in
    # since (it keeps the lease frozen, data kept, for its own grace window; default 24 h on both sides).
    extend_window_s: int = 86400
    max_body_bytes: int = 64 * 1024
    operator_token: str | None = field(default=None, repr=False)
    gateway_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.web_domain is not None:
            parse_web_domain(self.web_domain)
        if self.web_scheme not in WEB_SCHEMES:
            raise ValueError(f"the web scheme must be one of {', '.join(WEB_SCHEMES)}")
        if self.memory_reserve_mb < 0 or self.disk_reserve_gb < 0:
            raise ValueError("the memory and disk reserves must not be negative")
        if self.port_quarantine_s < 0:
            raise ValueError("the port quarantine must not be negative")
        if not 0 <= self.max_checkin_wait_s <= MAX_CHECKIN_WAIT_S:
            raise ValueError(f"the longest check-in wait must be between 0 and {MAX_CHECKIN_WAIT_S} seconds")
        if self.extend_window_s < 0:
            raise ValueError("the extension window must not be negative")
        # Both kinds of port listen on the same tunnel server.
        if self.web_enabled and _overlap(self.port_range, self.web_port_range):
            raise ValueError("the web port range overlaps the tunnel port range")

    @property
    def web_enabled(self) -> bool:
        return self.web_domain is not None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir).resolve() / DATABASE_FILE}"

    @property
    def resolved_tunnel_host(self) -> str:
        if self.tunnel_host:
            return self.tunnel_host
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def operator_token_file(self) -> Path:
        return Path(self.data_dir) / OPERATOR_TOKEN_FILE

    @property
    def gateway_token_file(self) -> Path:
        return Path(self.data_dir) / GATEWAY_TOKEN_FILE

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def load_operator_token(settings: Settings) -> str:
    """The operator token: explicit setting, else env, else <data-dir>/operator_token (made 0600)."""
    return _load_token("operator", settings.operator_token, OPERATOR_TOKEN_ENV, settings.operator_token_file)


def load_gateway_token(settings: Settings) -> str:
    """The web gateway's token: explicit setting, else env, else <data-dir>/gateway_token (made 0600)."""
    return _load_token("gateway", settings.gateway_token, GATEWAY_TOKEN_ENV, settings.gateway_token_file)


def _load_token(what: str, explicit: str | None, env_name: str, path: Path) -> str:
    token = explicit or os.environ.get(env_name)
    if token:
        if len(token) < MIN_TOKEN_LEN:
            raise ValueError(f"the {what} token must have at least {MIN_TOKEN_LEN} characters")
        return token
    return _token_from_file(path)


def _token_from_file(path: Path) -> str:
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= MIN_TOKEN_LEN:
            return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return token
