"""HTTP routes of contract v1; thin: authenticate, validate, call the service."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from p2pvps_server import answers, schemas
from p2pvps_server.longpoll import held_checkin
from p2pvps_server.auth import (Caller, require_device, require_gateway_or_operator, require_operator,
                                require_operator_or_device)
from p2pvps_server.service import MAX_ROUTE_CURSOR_LEN, DeviceQuery, MarketplaceService
from p2pvps_server.settings import MAX_CHECKIN_WAIT_S

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
DeviceId = Annotated[str, Path(max_length=64, pattern=ID_PATTERN)]
RentalId = Annotated[str, Path(max_length=64, pattern=ID_PATTERN)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": {"error": "code", "detail": "text"}}}}
    for code, text in ((400, "malformed request"), (401, "missing or invalid token"),
                       (403, "token without rights to this call"), (404, "unknown id"),
                       (409, "conflict"), (413, "body too large"), (422, "invalid request"))
}


def answer(model: type, status: int = 200) -> dict[str, Any]:
    """Route options that document the answer's shape; the routes still return the views' dicts."""
    documented = {"model": model, "description": model.__doc__ or "success"}
    return {"response_model": None, "responses": {status: documented}}


router = APIRouter(prefix="/api/v1", responses=ERRORS)


# The dependencies that do no I/O are coroutines: FastAPI runs a plain function in a worker thread, a hand-off
# that costs more CPU than the function itself.
async def service(request: Request) -> MarketplaceService:
    return request.app.state.service


def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    return request.app.state.authenticator.caller(authorization)


async def device_token_hash(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """A device token's hash (no database): the check-in looks its device up in its own transaction."""
    return request.app.state.authenticator.device_token_hash(authorization)


async def operator(who: Annotated[Caller, Depends(caller)]) -> Caller:
    require_operator(who)
    return who


async def gateway_or_operator(who: Annotated[Caller, Depends(caller)]) -> Caller:
    require_gateway_or_operator(who)
    return who


Service = Annotated[MarketplaceService, Depends(service)]
AnyCaller = Annotated[Caller, Depends(caller)]
DeviceTokenHash = Annotated[str, Depends(device_token_hash)]
Operator = Annotated[Caller, Depends(operator)]
GatewayOrOperator = Annotated[Caller, Depends(gateway_or_operator)]


@router.post("/devices", status_code=201, tags=["devices"], **answer(answers.DeviceCreated, 201))
def create_device(body: schemas.DeviceCreate, svc: Service, dummy: Operator) -> dict[str, Any]:
    """Create a device; its token is in this answer only."""
    return svc.create_device(body)


@router.get("/devices", tags=["devices"], **answer(answers.DevicePage))
def list_devices(
    svc: Service, dummy: Operator,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
    status: Literal["new", "online", "offline"] | None = None,
    owner: Annotated[str | None, Query(max_length=64)] = None,
    architecture: Annotated[str | None, Query(max_length=32)] = None,
    rented: bool | None = None,
) -> JSONResponse:
    """One page of devices, ordered by id; pass next_cursor back as cursor."""
    # The view is plain JSON already (strings, numbers, the facts object): sent as it is, without
    # FastAPI's jsonable_encoder walking every value of up to 500 devices first.
    return JSONResponse(svc.list_devices(DeviceQuery(limit=limit, cursor=cursor, status=status, owner=owner,
                                                     architecture=architecture, rented=rented)))


@router.get("/devices/{device_id}", tags=["devices"], **answer(answers.Device))
def get_device(device_id: DeviceId, svc: Service, who: AnyCaller) -> dict[str, Any]:
    require_operator_or_device(who, device_id)
    return svc.get_device(device_id)


@router.delete("/devices/{device_id}", status_code=204, tags=["devices"])
def delete_device(device_id: DeviceId, svc: Service, who: AnyCaller) -> Response:
    """Delete a device: ends its lease and frees its tunnel port."""
    require_operator_or_device(who, device_id)
    svc.delete_device(device_id)
    return Response(status_code=204)


@router.post("/devices/{device_id}/register", tags=["device side"], **answer(answers.Registered))
def register_device(device_id: DeviceId, body: schemas.RegisterRequest, svc: Service,
                    who: AnyCaller) -> dict[str, Any]:
    """Register or refresh (idempotent); the tunnel port is assigned once, the web port once web hosting is on."""
    require_device(who, device_id)
    return svc.register(device_id, body)


@router.post("/devices/{device_id}/checkin", tags=["device side"], **answer(answers.CheckedIn))
async def checkin(
    device_id: DeviceId, request: Request, svc: Service, token_hash: DeviceTokenHash,
    body: schemas.CheckinRequest | None = None,
    wait: Annotated[int, Query(ge=0, le=MAX_CHECKIN_WAIT_S, description=(
        "long-poll: with the body's lease_etag, hold the answer up to this many seconds (at most the server's "
        "--max-checkin-wait) while the device's lease keeps that etag"))] = 0,
) -> dict[str, Any]:
    """Heartbeat; answers the lease the device should run (or null), held with ?wait= until it changes."""
    return await held_checkin(svc, request.app.state.lease_notifier, device_id, token_hash, body, wait)


@router.post("/rentals", status_code=201, tags=["rentals"], **answer(answers.Rental, 201))
def create_rental(body: schemas.RentalCreate, svc: Service, dummy: Operator) -> dict[str, Any]:
    """Rent a device; limits must fit the device's facts minus its reserves (409 limits_exceed_device)."""
    return svc.create_rental(body)


@router.get("/rentals/{rental_id}", tags=["rentals"], **answer(answers.Rental))
def get_rental(rental_id: RentalId, svc: Service, dummy: Operator) -> dict[str, Any]:
    return svc.get_rental(rental_id)


@router.get("/rentals/{rental_id}/receipt", tags=["rentals"], **answer(answers.Receipt))
def get_receipt(rental_id: RentalId, svc: Service, dummy: Operator) -> dict[str, Any]:
    """The device's signed wipe receipt of the rental (404 until the device reported it); verify it offline
    with ssh-keygen -Y verify (see verify_command)."""
    return svc.get_receipt(rental_id)


@router.patch("/rentals/{rental_id}", tags=["rentals"], **answer(answers.Rental))
def patch_rental(rental_id: RentalId, body: schemas.RentalPatch, svc: Service, dummy: Operator) -> dict[str, Any]:
    """Replace the keys and/or change limits of an active lease (same lease id)."""
    return svc.patch_rental(rental_id, body)


@router.post("/rentals/{rental_id}/extend", tags=["rentals"], **answer(answers.Rental))
def extend_rental(rental_id: RentalId, body: schemas.RentalExtend, svc: Service, dummy: Operator) -> dict[str, Any]:
    """Extend a rental (same lease id) to a later expires_at, at most 30 days from now, for its renter.

    A live rental, or one expired within --extend-window whose device has not checked in since (the
    device keeps it frozen and resumes the same container); 409 rental_not_extendable otherwise.
    """
    return svc.extend_rental(rental_id, body)


@router.delete("/rentals/{rental_id}", tags=["rentals"], **answer(answers.Rental))
def end_rental(rental_id: RentalId, svc: Service, dummy: Operator) -> dict[str, Any]:
    """End a lease now (idempotent); answers the rental with ended_at set."""
    return svc.end_rental(rental_id)


@router.get("/routes", tags=["web gateway"], **answer(answers.RoutePage))
def list_routes(
    svc: Service, dummy: GatewayOrOperator,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 500,
    cursor: Annotated[str | None, Query(max_length=MAX_ROUTE_CURSOR_LEN,
                                        description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Web gateway routes, ordered by hostname: one per active lease on a device with a web port.

    For the gateway token (or the operator's); pass next_cursor back as cursor.
    """
    return svc.list_routes(limit, cursor)


@router.get("/tunnel-keys", tags=["tunnel server"], **answer(answers.TunnelKeyPage))
def list_tunnel_keys(
    svc: Service, dummy: GatewayOrOperator,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 500,
    cursor: Annotated[str | None, Query(max_length=256, description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Every registered device's tunnel key and ports, ordered by device id.

    For the gateway token (or the operator's). The list is complete: a device that is not in it
    (deleted, decommissioned, not registered) must lose its tunnel.
    """
    return svc.list_tunnel_keys(limit, cursor)
