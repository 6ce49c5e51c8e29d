"""Database layer: SQLAlchemy 2 models, engine set-up, schema upgrade and session scopes.

SQLite is the default. Writes go through `Database.writing()`, which serialises them
inside this process (SQLite allows one writer anyway, and a lock avoids SQLITE_BUSY on
lock upgrades); the unique constraints still guard against other processes.

SQLite and PostgreSQL both work. The schema is made and upgraded by the Alembic migrations
in `migrations/` (`upgrade_schema()`, run at every start). A database made before the
migrations existed (tables but no `alembic_version`) is first given the nullable columns it
lacks, which makes it the baseline schema, and is then stamped with the baseline revision.
"""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (JSON, Column, DateTime, Float, ForeignKey, Index, Integer, String, Table, UniqueConstraint,
                        create_engine, event, inspect, text)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from alembic import command
from alembic.config import Config

UTC = dt.UTC
MIGRATIONS = Path(__file__).with_name("migrations")
#: The first revision: the schema of the last version without migrations.
BASELINE_REVISION = "0001"
#: Columns added by the migrations after the baseline: a database made before the migrations is brought
#: to the baseline without them (the migrations add them).
POST_BASELINE_COLUMNS = frozenset(("rentals.ssh_host_key",))
#: Any number shared by every server process: on PostgreSQL, one process migrates at a time.
MIGRATION_LOCK_KEY = 0x70327076


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
        UniqueConstraint("web_remote_port", name="uq_devices_web_remote_port"),
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
    # ed25519 key the device signs its wipe receipts with (reported at check-in)
    receipt_public_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    remote_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    web_remote_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    observed: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    registered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_checkin: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Rental(Base):
    __tablename__ = "rentals"
    __table_args__ = (
        Index("ix_rentals_device_open", "device_id", "ended_at", "expires_at"),
        Index("ix_rentals_expires_at", "expires_at"),
        UniqueConstraint("web_hostname", name="uq_rentals_web_hostname"),
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
    web_hostname: Mapped[str | None] = mapped_column(String(253), nullable=True)
    # The renter container's SSH host key as the device reported it (migration 0002)
    ssh_host_key: Mapped[str | None] = mapped_column(String(128), nullable=True)


class WipeReceipt(Base):
    """A device's signed receipt of the wipe of a lease, verified when it arrived; the first one is kept."""
    __tablename__ = "wipe_receipts"

    rental_id: Mapped[str] = mapped_column(String(36), ForeignKey("rentals.id", ondelete="CASCADE"),
                                           primary_key=True)
    device_id: Mapped[str] = mapped_column(String(36))
    receipt: Mapped[str] = mapped_column(String(4096))
    signature: Mapped[str] = mapped_column(String(2048))
    public_key: Mapped[str] = mapped_column(String(512))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ReleasedPort(Base):
    """A port of a deleted device, kept from new devices for the quarantine (--port-quarantine):
    the old device's tunnel may hold it until the tunnel server drops its key."""
    __tablename__ = "released_ports"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)   # "tunnel" or "web"
    port: Mapped[int] = mapped_column(Integer, primary_key=True)
    released_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


# At most one rental per device that has not been ended; expired ones are closed before a
# new one is created. A partial unique index (SQLite and PostgreSQL both have them).
Index("uq_rentals_one_open_per_device", Rental.device_id, unique=True,
      sqlite_where=Rental.ended_at.is_(None), postgresql_where=Rental.ended_at.is_(None))


def add_missing_columns(connection: Connection) -> list[str]:
    """Add the models' nullable columns that existing tables lack, and their unique indexes.

    With `create_all` (missing tables), this brings a database made before the migrations to
    the baseline revision. Returns "table.column" of each column added. When a migration after
    the baseline changes the models, this must keep adding the baseline's columns only.
    """
    inspector = inspect(connection)
    added: list[str] = []
    for table in Base.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present and f"{table.name}.{column.name}" not in POST_BASELINE_COLUMNS:
                _add_column(connection, table, column)
                added.append(f"{table.name}.{column.name}")
    return added


def _add_column(connection: Connection, table: Table, column: Column) -> None:
    if not column.nullable:
        raise ValueError(f"the database lacks the column {table.name}.{column.name}, which cannot be "
                         "added to existing rows; start with a new database")
    quote = connection.dialect.identifier_preparer.quote
    column_type = column.type.compile(dialect=connection.dialect)
    connection.execute(text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {column_type}"))
    # SQLite cannot add a column with a UNIQUE constraint; a unique index does the same job.
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and list(constraint.columns.keys()) == [column.name]:
            connection.execute(text(f"CREATE UNIQUE INDEX {quote(str(constraint.name))} "
                                    f"ON {quote(table.name)} ({quote(column.name)})"))


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _engine_options(url: str) -> dict[str, Any]:
    # As many connections as the threads that use them (AnyIO's 40 worker threads per process).
    pool = {"pool_size": 20, "max_overflow": 20}
    if not url.startswith("sqlite"):
        return dict(pool, pool_pre_ping=True)
    options: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if url in ("sqlite://", "sqlite:///:memory:"):
        options["poolclass"] = StaticPool
    else:
        options.update(pool)
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

    def upgrade_schema(self) -> list[str]:
        """Bring the database to the newest revision; returns the columns added to a database
        made before the migrations (see the module's docstring)."""
        with self._write_lock, self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            config = _alembic_config(connection)
            inspector = inspect(connection)
            added: list[str] = []
            if inspector.has_table("devices") and not inspector.has_table("alembic_version"):
                Base.metadata.create_all(connection)
                added = add_missing_columns(connection)
                command.stamp(config, BASELINE_REVISION)
            command.upgrade(config, "head")
            return added

    def revision(self) -> str | None:
        """The database's Alembic revision (None before the first upgrade)."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextmanager
    def writing(self, exclusive: bool = True) -> Iterator[Session]:
        """One transaction, committed at the end. `exclusive=False`: not serialised with this process's other
        writes on PostgreSQL (its row locks suffice for a write that touches rows no other write of this
        process inserts concurrently); SQLite's writes are always serialised."""
        if exclusive or self.engine.dialect.name == "sqlite":
            with self._write_lock, self._sessions.begin() as session:
                yield session
        else:
            with self._sessions.begin() as session:
                yield session
