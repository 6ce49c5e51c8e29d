"""The FastAPI application factory."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from p2pvps_server.auth import Authenticator
from p2pvps_server.db import Database
from p2pvps_server.errors import BodySizeLimit, install_error_handlers
from p2pvps_server.longpoll import LeaseNotifier, PostgresLeaseChannel
from p2pvps_server.routes import router
from p2pvps_server.service import MarketplaceService
from p2pvps_server.settings import Settings, load_gateway_token, load_operator_token

API_VERSION = "1.0.0"
LOG = logging.getLogger("p2pvps_server")


def create_app(settings: Settings, operator_token: str | None = None, gateway_token: str | None = None) -> FastAPI:
    """Build the app: database schema created or upgraded, tokens loaded, routes and handlers set."""
    token = operator_token or load_operator_token(settings)
    gateway = gateway_token or load_gateway_token(settings)
    database = Database(settings.resolved_database_url)
    added = database.upgrade_schema()
    if added:
        LOG.info("database upgraded: added the columns %s", ", ".join(added))

    notifier = LeaseNotifier()
    channel = PostgresLeaseChannel(database, notifier) if database.engine.dialect.name == "postgresql" else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if channel is not None:
            channel.start()
        yield
        if channel is not None:
            channel.stop()
        database.dispose()

    app = FastAPI(title="p2pvps marketplace (reference server)", version=API_VERSION,
                  lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.settings = settings
    app.state.database = database
    app.state.lease_notifier = notifier
    app.state.service = MarketplaceService(database, settings,
                                           lease_changed=(channel or notifier).lease_changed)
    given = app.state.service.assign_missing_web_ports()
    if given:
        LOG.info("web hosting: gave %d registered devices a web port", given)
    app.state.authenticator = Authenticator(database, token, gateway)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(router)
    app.add_api_route("/healthz", _health, methods=["GET"], include_in_schema=False)
    return app


def _health() -> dict[str, str]:
    return {"status": "ok"}
