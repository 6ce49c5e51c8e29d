"""What the server keeps: hashed device tokens, the operator token file, data across restarts."""
import hashlib
import sqlite3
import stat
import subprocess

from tests.fixtures.common import free_port
from tests.fixtures.server import PYTHON, ROOT, SERVER_DIR


def database_dump(path):
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return "\n".join(db.iterdump())


def test_device_token_stored_only_as_sha256(marketplace):
    device_id, token = marketplace.create_device("pi-hash")
    digest = hashlib.sha256(token.encode()).hexdigest()
    with sqlite3.connect(f"file:{marketplace.db_path}?mode=ro", uri=True) as db:
        stored = db.execute("SELECT token_hash FROM devices WHERE id = ?", (device_id,)).fetchone()[0]
    assert stored == digest
    dump = database_dump(marketplace.db_path)
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


def test_restart_keeps_data_and_tokens(marketplace):
    device_id, token = marketplace.online_device("pi-restart")
    port = marketplace.request("GET", f"/api/v1/devices/{device_id}").json()["tunnel"]["remote_port"]
    rental = marketplace.create_rental(device_id, renter="dave")
    operator_token = marketplace.operator_token

    marketplace.stop()
    marketplace.start()

    assert marketplace.operator_token == operator_token
    device = marketplace.request("GET", f"/api/v1/devices/{device_id}", token=token).json()
    assert device["tunnel"]["remote_port"] == port and device["lease"]["id"] == rental["id"]
    assert marketplace.checkin(device_id, token)["lease"]["id"] == rental["id"]
    assert marketplace.get_rental(rental["id"]) == rental
    assert marketplace.register_device(device_id, token)["tunnel"]["remote_port"] == port


def test_cli_rejects_bad_options(tmp_path):
    env = {"PYTHONPATH": str(SERVER_DIR), "PATH": "/usr/bin:/bin"}
    for option in (["--port-range", "20-10"], ["--port-range", "abc"], ["--offline-after", "0"],
                   ["--tunnel-host-key", "not a key"]):
        proc = subprocess.run([str(PYTHON), "-m", "p2pvps_server", "--data-dir", str(tmp_path),
                               "--port", str(free_port()), *option],
                              capture_output=True, text=True, timeout=30, cwd=ROOT, env=env, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (option, proc.stderr)


def test_cli_help(tmp_path):
    proc = subprocess.run([str(PYTHON), "-m", "p2pvps_server", "--help"], capture_output=True, text=True,
                          timeout=30, cwd=ROOT, env={"PYTHONPATH": str(SERVER_DIR)}, check=False)
    assert proc.returncode == 0
    for option in ("--host", "--port", "--data-dir", "--database-url", "--port-range", "--offline-after",
                   "--checkin-interval", "--tunnel-host", "--tunnel-port", "--tunnel-user",
                   "--tunnel-host-key", "--default-image"):
        assert option in proc.stdout
