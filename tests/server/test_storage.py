"""What the server keeps: hashed device tokens, the token files, data across restarts, old databases."""
import datetime as dt
import hashlib
import json
import re
import sqlite3
import stat
import subprocess

import pytest
from sqlalchemy.exc import IntegrityError

from tests.fixtures.common import free_port
from tests.fixtures.server import (
    DEFAULT_FACTS, PYTHON, ROOT, SERVER_DIR, Marketplace, database_engine, ed25519_public_key, new_database_url)

# The schema as the server made it before web hosting (no devices.web_remote_port, no rentals.web_hostname).
OLD_SCHEMA = """
CREATE TABLE devices (
    id VARCHAR(36) NOT NULL, name VARCHAR(64) NOT NULL, description VARCHAR(500) NOT NULL,
    owner VARCHAR(64) NOT NULL, token_hash VARCHAR(64) NOT NULL, facts JSON, architecture VARCHAR(32),
    tunnel_public_key VARCHAR(4096), remote_port INTEGER, observed JSON, created_at DATETIME NOT NULL,
    registered_at DATETIME, last_checkin DATETIME,
    PRIMARY KEY (id),
    CONSTRAINT uq_devices_remote_port UNIQUE (remote_port),
    CONSTRAINT uq_devices_token_hash UNIQUE (token_hash)
);
CREATE INDEX ix_devices_architecture ON devices (architecture);
CREATE INDEX ix_devices_owner ON devices (owner);
CREATE INDEX ix_devices_last_checkin ON devices (last_checkin);
CREATE TABLE rentals (
    id VARCHAR(36) NOT NULL, device_id VARCHAR(36), renter VARCHAR(32) NOT NULL, username VARCHAR(32) NOT NULL,
    ssh_authorized_keys JSON NOT NULL, image VARCHAR(255) NOT NULL, memory_mb INTEGER NOT NULL,
    cpus FLOAT NOT NULL, pids INTEGER NOT NULL, disk_gb INTEGER NOT NULL, created_at DATETIME NOT NULL,
    expires_at DATETIME NOT NULL, ended_at DATETIME,
    PRIMARY KEY (id),
    FOREIGN KEY(device_id) REFERENCES devices (id) ON DELETE SET NULL
);
CREATE INDEX ix_rentals_renter ON rentals (renter);
CREATE INDEX ix_rentals_device_open ON rentals (device_id, ended_at, expires_at);
CREATE UNIQUE INDEX uq_rentals_one_open_per_device ON rentals (device_id) WHERE ended_at IS NULL;
CREATE INDEX ix_rentals_expires_at ON rentals (expires_at);
"""


def test_device_token_stored_only_as_sha256(marketplace):
    device_id, token = marketplace.create_device("pi-hash")
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert marketplace.sql("SELECT token_hash FROM devices WHERE id = :id", id=device_id) == [(digest,)]
    dump = marketplace.dump()
    assert token not in dump and digest in dump
    assert marketplace.operator_token not in dump
    for path in marketplace.data_dir.iterdir():              # nor in the WAL, the log, anything
        if path.name != "operator_token":
            assert token.encode() not in path.read_bytes(), path.name


def test_operator_token_file_is_private_and_not_printed(marketplace):
    token_file = marketplace.data_dir / "operator_token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(marketplace.operator_token) >= 32
    log = marketplace.log_tail(100000)
    assert marketplace.operator_token not in log
    assert str(token_file) in log and marketplace.url in log


def test_gateway_token_file_is_private_and_not_printed(marketplace):
    token_file = marketplace.data_dir / "gateway_token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(marketplace.gateway_token) >= 32 and marketplace.gateway_token != marketplace.operator_token
    log = marketplace.log_tail(100000)
    assert marketplace.gateway_token not in log
    assert f"gateway token: {token_file}" in log


def run_server(tmp_path, *options, env=None):
    """Start the CLI that is expected to refuse to start -> CompletedProcess."""
    env = {"PYTHONPATH": str(SERVER_DIR), "PATH": "/usr/bin:/bin", **(env or {})}
    return subprocess.run([str(PYTHON), "-m", "p2pvps_server", "--data-dir", str(tmp_path),
                           "--port", str(free_port()), *options],
                          capture_output=True, text=True, timeout=30, cwd=ROOT, env=env, check=False)


@pytest.mark.parametrize("gateway", ["same", "short-token"])
def test_bad_gateway_token_is_refused(tmp_path, gateway):
    operator = "operator-token-0123456789"
    token = operator if gateway == "same" else gateway
    proc = run_server(tmp_path, env={"P2PVPS_OPERATOR_TOKEN": operator, "P2PVPS_GATEWAY_TOKEN": token})
    assert proc.returncode == 2 and "gateway token" in proc.stderr and "Traceback" not in proc.stderr
    assert token not in proc.stderr + proc.stdout


def test_restart_keeps_data_and_tokens(marketplace):
    device_id, token = marketplace.online_device("pi-restart")
    port = marketplace.request("GET", f"/api/v1/devices/{device_id}").json()["tunnel"]["remote_port"]
    rental = marketplace.create_rental(device_id, renter="dave")
    operator_token, gateway_token = marketplace.operator_token, marketplace.gateway_token

    marketplace.stop()
    marketplace.start()

    assert marketplace.operator_token == operator_token and marketplace.gateway_token == gateway_token
    device = marketplace.request("GET", f"/api/v1/devices/{device_id}", token=token).json()
    assert device["tunnel"]["remote_port"] == port and device["lease"]["id"] == rental["id"]
    assert marketplace.checkin(device_id, token)["lease"]["id"] == rental["id"]
    assert marketplace.get_rental(rental["id"]) == rental
    assert marketplace.register_device(device_id, token)["tunnel"]["remote_port"] == port


def test_cli_rejects_bad_options(tmp_path):
    for option in (["--port-range", "20-10"], ["--port-range", "abc"], ["--offline-after", "0"],
                   ["--tunnel-host-key", "not a key"], ["--web-domain", "Web.Test"],
                   ["--web-domain", "web.test", "--port-range", "30900-31100"]):       # overlaps the web ports
        proc = run_server(tmp_path, *option)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (option, proc.stderr)
        assert "listening" not in proc.stdout


BAD_WEB_OPTIONS = [
    ["--web-domain", "Web.Test"], ["--web-domain", "-web.test"], ["--web-domain", "web-.test"],
    ["--web-domain", "a..test"], ["--web-domain", "web.test."], ["--web-domain", "web_test"],
    ["--web-domain", "a" * 64 + ".test"], ["--web-domain", ".".join(["abcdefghi"] * 21)], ["--web-domain", ""],
    ["--web-port-range", "30999-30000"], ["--web-scheme", "ftp"], ["--memory-reserve-mb", "-1"],
    ["--memory-reserve-mb", "1.5"], ["--disk-reserve-gb", "-0.5"], ["--disk-reserve-gb", "nan"],
    ["--disk-reserve-gb", "inf"], ["--web-domain", "web.test", "--web-port-range", "20500-20600"],
]


def test_cli_parses_web_options(monkeypatch, capsys, tmp_path):
    """In process (no server start): bad web options are refused, good ones reach the settings."""
    monkeypatch.syspath_prepend(str(SERVER_DIR))
    from p2pvps_server.__main__ import build_parser, settings_from_args

    def settings(*options):
        return settings_from_args(build_parser().parse_args(["--data-dir", str(tmp_path), *options]))

    for option in BAD_WEB_OPTIONS:
        with pytest.raises((SystemExit, ValueError)):
            settings(*option)
    assert "Traceback" not in capsys.readouterr().err
    good = settings("--web-domain", "p2pvps.localhost", "--web-port-range", "31000-31009", "--web-scheme", "http",
                    "--memory-reserve-mb", "0", "--disk-reserve-gb", "0.5")
    assert (good.web_domain, good.web_port_range, good.web_scheme, good.memory_reserve_mb, good.disk_reserve_gb) \
        == ("p2pvps.localhost", (31000, 31009), "http", 0, 0.5)
    assert settings("--web-domain", "a" * 63 + "." + "b" * 63).web_domain                    # label limits
    defaults = settings()
    assert (defaults.web_domain, defaults.web_port_range, defaults.web_scheme, defaults.memory_reserve_mb,
            defaults.disk_reserve_gb) == (None, (30000, 30999), "https", 256, 1.0)


def test_cli_accepts_overlapping_web_ports_while_web_hosting_is_off(tmp_path):
    server = Marketplace(tmp_path, port_range="30900-31100")
    try:
        assert server.start().running
    finally:
        server.stop()


def test_cli_help(tmp_path):
    proc = subprocess.run([str(PYTHON), "-m", "p2pvps_server", "--help"], capture_output=True, text=True,
                          timeout=30, cwd=ROOT, env={"PYTHONPATH": str(SERVER_DIR)}, check=False)
    assert proc.returncode == 0
    for option in ("--host", "--port", "--data-dir", "--database-url", "--port-range", "--offline-after",
                   "--checkin-interval", "--tunnel-host", "--tunnel-port", "--tunnel-user",
                   "--tunnel-host-key", "--default-image", "--web-domain", "--web-port-range", "--web-scheme",
                   "--memory-reserve-mb", "--disk-reserve-gb"):
        assert option in proc.stdout


def sqlite_time(value):
    return value.astimezone(dt.UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def make_old_database(path, device_token):
    """An old database file with one registered device (tunnel port 20000) and its live rental."""
    now = dt.datetime.now(dt.UTC)
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO devices (id, name, description, owner, token_hash, facts, architecture, "
                   "tunnel_public_key, remote_port, created_at, registered_at, last_checkin) "
                   "VALUES ('old-device', 'pi-old', '', 'default', ?, ?, 'arm64', ?, 20000, ?, ?, ?)",
                   (hashlib.sha256(device_token.encode()).hexdigest(), json.dumps(DEFAULT_FACTS),
                    ed25519_public_key(), sqlite_time(now), sqlite_time(now), sqlite_time(now)))
        db.execute("INSERT INTO rentals (id, device_id, renter, username, ssh_authorized_keys, image, memory_mb, "
                   "cpus, pids, disk_gb, created_at, expires_at) VALUES ('old-rental', 'old-device', 'alice', "
                   "'alice', ?, 'p2pvps/renter:latest', 512, 1.0, 256, 2, ?, ?)",
                   (json.dumps([ed25519_public_key()]), sqlite_time(now),
                    sqlite_time(now.replace(microsecond=0) + dt.timedelta(hours=1))))
    db.close()


def unique_indexes(db, table):
    return {row[1]: [info[2] for info in db.execute(f"PRAGMA index_info('{row[1]}')")]
            for row in db.execute(f"PRAGMA index_list('{table}')") if row[2]}


def test_old_database_gets_the_new_columns(tmp_path):
    device_token = "old-device-token-0123456789abcdef"
    data_dir = tmp_path / "old"
    data_dir.mkdir()
    make_old_database(data_dir / "marketplace.db", device_token)
    server = Marketplace(data_dir, database="sqlite", web_domain="web.test")
    try:
        server.start()
        device = server.request("GET", "/api/v1/devices/old-device").json()
        # a registered device gets its web port when web hosting starts, without registering again
        assert device["tunnel"]["remote_port"] == 20000 and device["tunnel"]["web_remote_port"] == 30000
        old = server.get_rental("old-rental")
        assert old["active"] is True and old["web"] is None                 # rented before web hosting
        assert server.checkin("old-device", device_token)["lease"]["id"] == "old-rental"

        assert server.register_device("old-device", device_token)["tunnel"]["web_remote_port"] == 30000
        other = server.online_device("pi-new")
        assert server.register_device(*other)["tunnel"]["web_remote_port"] == 30001
        server.end_rental("old-rental")
        rental = server.create_rental("old-device", renter="bob")
        assert rental["web"]["hostname"].startswith("bob-")
        assert [route["lease_id"] for route in server.all_routes()] == [rental["id"]]

        server.stop()
        server.start()                                                      # a second start changes nothing
        assert server.get_rental(rental["id"]) == rental
    finally:
        server.stop()
    server.assert_no_server_errors()

    with sqlite3.connect(data_dir / "marketplace.db") as db:
        assert unique_indexes(db, "devices")["uq_devices_web_remote_port"] == ["web_remote_port"]
        assert unique_indexes(db, "rentals")["uq_rentals_web_hostname"] == ["web_hostname"]
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("UPDATE devices SET web_remote_port = 30000 WHERE id != 'old-device'")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("UPDATE rentals SET web_hostname = ? WHERE id = 'old-rental'", (rental["web"]["hostname"],))
    db.close()


def test_the_schema_is_made_by_the_migrations_and_a_restart_changes_nothing(marketplace):
    assert marketplace.sql("SELECT version_num FROM alembic_version") == [("0002",)]
    device_id, _token = marketplace.create_device("pi-migrated")
    marketplace.stop()
    marketplace.start()
    assert marketplace.sql("SELECT version_num FROM alembic_version") == [("0002",)]
    assert marketplace.request("GET", f"/api/v1/devices/{device_id}").json()["name"] == "pi-migrated"


def test_the_database_refuses_a_second_open_rental_per_device(marketplace):
    """The partial unique index exists on every engine, not only the service's check."""
    device = marketplace.online_device("pi-one-open")
    rental = marketplace.create_rental(device[0], renter="alice")
    with pytest.raises(IntegrityError):
        marketplace.sql("INSERT INTO rentals (id, device_id, renter, username, ssh_authorized_keys, image, "
                        "memory_mb, cpus, pids, disk_gb, created_at, expires_at) SELECT 'second', device_id, "
                        "renter, username, ssh_authorized_keys, image, memory_mb, cpus, pids, disk_gb, created_at, "
                        "expires_at FROM rentals WHERE id = :id", id=rental["id"])


def test_a_repeated_checkin_is_one_select_and_an_update_of_its_time(tmp_path, monkeypatch):
    """In process, on the test database: a check-in is one transaction of two statements, the device (found
    by its token) with its lease, then the UPDATE; the second identical one updates last_checkin alone."""
    monkeypatch.syspath_prepend(str(SERVER_DIR))
    from sqlalchemy import event

    from p2pvps_server import schemas
    from p2pvps_server.auth import hash_token
    from p2pvps_server.db import Database
    from p2pvps_server.service import MarketplaceService
    from p2pvps_server.settings import Settings

    database = Database(new_database_url(tmp_path / "checkin.db"))
    database.upgrade_schema()
    service = MarketplaceService(database, Settings(data_dir=tmp_path))
    created = service.create_device(schemas.DeviceCreate(name="pi"))
    device_id, token_hash = created["id"], hash_token(created["device_token"])
    registration = {"facts": DEFAULT_FACTS, "tunnel_public_key": ed25519_public_key()}
    service.register(device_id, schemas.RegisterRequest.model_validate_json(json.dumps(registration)))
    body = schemas.CheckinRequest.model_validate_json(json.dumps({"observed": {"lease_id": None, "state": "idle"}}))
    statements, transactions = [], []

    def record(_connection, _cursor, statement, _parameters, _context, _many):
        statements.append(" ".join(statement.split()))

    def begin(connection):
        transactions.append(connection)

    try:
        service.checkin(device_id, token_hash, body)
        event.listen(database.engine, "before_cursor_execute", record)
        event.listen(database.engine, "begin", begin)
        service.checkin(device_id, token_hash, body)
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
        event.remove(database.engine, "begin", begin)
        database.dispose()
    assert len(transactions) == 1 and len(statements) == 2, statements
    assert statements[0].startswith("SELECT devices.id, ") and " JOIN rentals ON " in statements[0], statements
    writes = statements[1:]
    assert writes[0].startswith("UPDATE devices SET "), writes
    assert re.fullmatch(r"last_checkin=[^,]+", writes[0].split(" SET ")[1].split(" WHERE ")[0]), writes


@pytest.mark.skipif(database_engine() == "sqlite", reason="SQLite serialises a process's writes, check-ins too")
def test_a_device_deleted_during_its_checkin_is_401(tmp_path, monkeypatch):
    """In process, on PostgreSQL: a check-in is not serialised with the other writes, so the device can be
    deleted between its SELECT and its UPDATE; the check-in is refused as one with an unknown token."""
    monkeypatch.syspath_prepend(str(SERVER_DIR))
    from sqlalchemy import create_engine, text

    from p2pvps_server import schemas
    from p2pvps_server.auth import hash_token
    from p2pvps_server.db import Database
    from p2pvps_server.errors import ApiError
    from p2pvps_server.service import MarketplaceService
    from p2pvps_server.settings import Settings

    url = new_database_url(tmp_path / "unused.db")
    database = Database(url)
    database.upgrade_schema()
    service = MarketplaceService(database, Settings(data_dir=tmp_path))
    created = service.create_device(schemas.DeviceCreate(name="pi"))
    checking_in = service._checking_in   # pylint: disable=protected-access

    def then_deleted(*args):
        found = checking_in(*args)
        other = create_engine(url)
        with other.begin() as connection:
            connection.execute(text("DELETE FROM devices WHERE id = :id"), {"id": created["id"]})
        other.dispose()
        return found

    monkeypatch.setattr(service, "_checking_in", then_deleted)
    try:
        with pytest.raises(ApiError) as refused:
            service.checkin(created["id"], hash_token(created["device_token"]), None)
    finally:
        database.dispose()
    assert refused.value.status == 401 and refused.value.error == "unauthorized"
