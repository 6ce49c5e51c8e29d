"""Database layer: SQLAlchemy 2 models, engine set-up and session scopes.

SQLite is the default. Writes go through `Database.writing()`, which serialises them
inside this process (SQLite allows one writer anyway, and a lock avoids SQLITE_BUSY on
lock upgrades); the unique constraints still guard against other processes.
"""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, UniqueConstraint, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

UTC = dt.UTC


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes, stored as naive UTC (portable across SQLite and Postgres)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("remote_port", name="uq_devices_remote_port"),
        UniqueConstraint("token_hash", name="uq_devices_token_hash"),
        Index("ix_devices_owner", "owner"),
        Index("ix_devices_architecture", "architecture"),
        Index("ix_devices_last_checkin", "last_checkin"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(500), default="")
    owner: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64))
    facts: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    architecture: Mapped[str | None] = mapped_column(String(32), nullable=True)
    tunnel_public_key: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    remote_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    observed: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    registered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_checkin: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Rental(Base):
    __tablename__ = "rentals"
    __table_args__ = (
        Index("ix_rentals_device_open", "device_id", "ended_at", "expires_at"),
        Index("ix_rentals_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    device_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("devices.id", ondelete="SET NULL"), nullable=True)
    renter: Mapped[str] = mapped_column(String(32), index=True)
    username: Mapped[str] = mapped_column(String(32))
    ssh_authorized_keys: Mapped[list] = mapped_column(JSON)
    image: Mapped[str] = mapped_column(String(255))
    memory_mb: Mapped[int] = mapped_column(Integer)
    cpus: Mapped[float] = mapped_column(Float)
    pids: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# At most one rental per device that has not been ended; expired ones are closed before a
# new one is created. A partial unique index (SQLite and PostgreSQL both have them).
Index("uq_rentals_one_open_per_device", Rental.device_id, unique=True,
      sqlite_where=Rental.ended_at.is_(None), postgresql_where=Rental.ended_at.is_(None))


def _engine_options(url: str) -> dict[str, Any]:
    if not url.startswith("sqlite"):
        return {"pool_pre_ping": True}
    options: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if url in ("sqlite://", "sqlite:///:memory:"):
        options["poolclass"] = StaticPool
    else:
        options.update(pool_size=20, max_overflow=20)
    return options


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """Engine plus two session scopes: `reading()` and `writing()` (one transaction)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, **_engine_options(url))
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.Lock()

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        with self._write_lock, self._sessions.begin() as session:
            yield session
