"""Bearer tokens: the operator token (constant-time compare) and per-device tokens (sha256)."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from p2pvps_server.db import Database, Device
from p2pvps_server.errors import forbidden, unauthorized

MAX_TOKEN_LEN = 512


def new_device_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who is calling: the operator, or one device (by id)."""

    device_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.device_id is None


OPERATOR = Caller()


def bearer_token(header: str | None) -> str:
    if not header:
        raise unauthorized("missing Authorization: Bearer token")
    scheme, dummy, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LEN or not token.isprintable():
        raise unauthorized("malformed Authorization header; expected 'Bearer <token>'")
    return token


class Authenticator:
    def __init__(self, database: Database, operator_token: str) -> None:
        self._database = database
        self._operator_token = operator_token.encode("utf-8")

    def caller(self, header: str | None) -> Caller:
        token = bearer_token(header)
        if hmac.compare_digest(token.encode("utf-8"), self._operator_token):
            return OPERATOR
        with self._database.reading() as session:
            device_id = session.scalar(select(Device.id).where(Device.token_hash == hash_token(token)))
        if device_id is None:
            raise unauthorized("invalid token")
        return Caller(device_id=device_id)


def require_operator(caller: Caller) -> None:
    if not caller.is_operator:
        raise forbidden("this call needs the operator token")


def require_device(caller: Caller, device_id: str) -> None:
    """Only that device's own token."""
    if caller.device_id != device_id:
        raise forbidden("this call needs the token of this device")


def require_operator_or_device(caller: Caller, device_id: str) -> None:
    if not caller.is_operator and caller.device_id != device_id:
        raise forbidden("a device token is valid only for its own device")
