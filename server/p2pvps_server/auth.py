"""Bearer tokens: the operator and gateway tokens (constant-time compare) and per-device tokens (sha256)."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from p2pvps_server.db import Database, Device
from p2pvps_server.errors import forbidden, unauthorized

MAX_TOKEN_LEN = 512
DEVICE_ONLY = "this call needs the token of this device"


def new_device_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who is calling: the operator, the web gateway (routes only), or one device (by id)."""

    kind: Literal["operator", "gateway", "device"]
    device_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"

    @property
    def is_gateway(self) -> bool:
        return self.kind == "gateway"


OPERATOR = Caller("operator")
GATEWAY = Caller("gateway")


def bearer_token(header: str | None) -> str:
    if not header:
        raise unauthorized("missing Authorization: Bearer token")
    scheme, dummy, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LEN or not token.isprintable():
        raise unauthorized("malformed Authorization header; expected 'Bearer <token>'")
    return token


class Authenticator:
    def __init__(self, database: Database, operator_token: str, gateway_token: str) -> None:
        if operator_token == gateway_token:
            raise ValueError("the gateway token must differ from the operator token")
        self._database = database
        self._operator_token = operator_token.encode("utf-8")
        self._gateway_token = gateway_token.encode("utf-8")

    def caller(self, header: str | None) -> Caller:
        token = bearer_token(header)
        given = token.encode("utf-8")
        if hmac.compare_digest(given, self._operator_token):
            return OPERATOR
        if hmac.compare_digest(given, self._gateway_token):
            return GATEWAY
        with self._database.reading() as session:
            device_id = session.scalar(select(Device.id).where(Device.token_hash == hash_token(token)))
        return device_caller(device_id)

    def device_token_hash(self, header: str | None) -> str:
        """The stored hash of the device token in `header`, for a call that looks its device up in its own
        transaction (the check-in, then `device_caller`); the operator's and the gateway's tokens are refused
        here, as `require_device` refuses them."""
        token = bearer_token(header)
        given = token.encode("utf-8")
        if hmac.compare_digest(given, self._operator_token) or hmac.compare_digest(given, self._gateway_token):
            raise forbidden(DEVICE_ONLY)
        return hash_token(token)


def device_caller(device_id: str | None) -> Caller:
    """The device a token was found for (401 when it names none)."""
    if device_id is None:
        raise unauthorized("invalid token")
    return Caller("device", device_id)


def require_operator(caller: Caller) -> None:
    if not caller.is_operator:
        raise forbidden("this call needs the operator token")


def require_gateway_or_operator(caller: Caller) -> None:
    if not (caller.is_gateway or caller.is_operator):
        raise forbidden("this call needs the gateway or the operator token")


def require_device(caller: Caller, device_id: str) -> None:
    """Only that device's own token."""
    if caller.device_id != device_id:
        raise forbidden(DEVICE_ONLY)


def require_operator_or_device(caller: Caller, device_id: str) -> None:
    if not caller.is_operator and caller.device_id != device_id:
        raise forbidden("a device token is valid only for its own device")
