"""Server settings: one frozen dataclass, filled by the CLI or by tests."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

OPERATOR_TOKEN_ENV = "P2PVPS_OPERATOR_TOKEN"
OPERATOR_TOKEN_FILE = "operator_token"
DATABASE_FILE = "marketplace.db"
MIN_OPERATOR_TOKEN_LEN = 16


def parse_port_range(text: str) -> tuple[int, int]:
    """'20000-20999' -> (20000, 20999); ValueError when malformed or out of 1..65535."""
    low_text, sep, high_text = text.partition("-")
    if not sep or not low_text.strip().isdigit() or not high_text.strip().isdigit():
        raise ValueError(f"port range must look like LOW-HIGH, got {text!r}")
    low, high = int(low_text), int(high_text)
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"port range {low}-{high} must satisfy 1 <= LOW <= HIGH <= 65535")
    return low, high


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
    max_body_bytes: int = 64 * 1024
    operator_token: str | None = field(default=None, repr=False)

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
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def load_operator_token(settings: Settings) -> str:
    """The operator token: explicit setting, else env, else <data-dir>/operator_token (made 0600)."""
    token = settings.operator_token or os.environ.get(OPERATOR_TOKEN_ENV)
    if token:
        if len(token) < MIN_OPERATOR_TOKEN_LEN:
            raise ValueError(f"the operator token must have at least {MIN_OPERATOR_TOKEN_LEN} characters")
        return token
    return _token_from_file(settings.operator_token_file)


def _token_from_file(path: Path) -> str:
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= MIN_OPERATOR_TOKEN_LEN:
            return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return token
