"""CLI: python -m p2pvps_server [options] (with PYTHONPATH=server)."""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path

import uvicorn

from p2pvps_server.app import create_app
from p2pvps_server.settings import (GATEWAY_TOKEN_ENV, MAX_CHECKIN_WAIT_S, OPERATOR_TOKEN_ENV, WEB_SCHEMES,
                                    Settings, parse_port_range, parse_web_domain)
from p2pvps_server.validation import check_ssh_public_key


SHUTDOWN_GRACE_S = 3
#: The command line, for the worker processes of --workers (each builds the app from it).
ARGV_ENV = "P2PVPS_SERVER_ARGV"


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be an integer >= 0")
    return value


def _non_negative_number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("must be a number >= 0")
    return value


def _checkin_wait(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_CHECKIN_WAIT_S:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_CHECKIN_WAIT_S}")
    return value


def _port_range(text: str) -> tuple[int, int]:
    try:
        return parse_port_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _host_key(text: str) -> str:
    try:
        return check_ssh_public_key(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"tunnel host key: {exc}") from None


def _web_domain(text: str) -> str:
    try:
        return parse_web_domain(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m p2pvps_server",
                                     description="p2pvps reference marketplace API server")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--data-dir", type=Path, default=Path("./marketplace-data"),
                        help="directory for the database and the operator and gateway token files")
    parser.add_argument("--database-url", default=None,
                        help="SQLAlchemy URL (default sqlite:///<data-dir>/marketplace.db)")
    parser.add_argument("--port-range", type=_port_range, default=(20000, 20999),
                        help="tunnel ports to assign, LOW-HIGH (default 20000-20999)")
    parser.add_argument("--offline-after", type=_positive_int, default=300,
                        help="seconds without check-in after which a device is offline (default 300)")
    parser.add_argument("--checkin-interval", type=_positive_int, default=120,
                        help="check-in interval told to devices, seconds (default 120)")
    parser.add_argument("--max-checkin-wait", type=_checkin_wait, default=300,
                        help="longest a long-poll check-in (?wait=) is held, seconds; 0 turns long-poll off "
                             "(default 300)")
    parser.add_argument("--tunnel-host", default=None, help="tunnel server host told to devices (default: --host)")
    parser.add_argument("--tunnel-port", type=int, default=22, help="tunnel server SSH port (default 22)")
    parser.add_argument("--tunnel-user", default="tunnel", help="tunnel server user (default tunnel)")
    parser.add_argument("--tunnel-host-key", type=_host_key, default=None,
                        help="tunnel server SSH host public key, e.g. 'ssh-ed25519 AAAA...'")
    parser.add_argument("--default-image", default="p2pvps/renter:latest",
                        help="renter image for leases that name none (default p2pvps/renter:latest)")
    parser.add_argument("--web-domain", type=_web_domain, default=None,
                        help="turn web hosting on: each lease gets <label>.<web-domain> (default: off)")
    parser.add_argument("--web-port-range", type=_port_range, default=(30000, 30999),
                        help="web ports to assign, LOW-HIGH (default 30000-30999)")
    parser.add_argument("--web-scheme", choices=WEB_SCHEMES, default="https",
                        help="scheme of the lease web URLs (default https)")
    parser.add_argument("--memory-reserve-mb", type=_non_negative_int, default=256,
                        help="memory a device keeps for itself, MB (default 256)")
    parser.add_argument("--disk-reserve-gb", type=_non_negative_number, default=1.0,
                        help="disk space a device keeps for itself, GB (default 1)")
    parser.add_argument("--port-quarantine", type=_non_negative_int, default=86400,
                        help="seconds a deleted device's ports stay unassigned (default 86400)")
    parser.add_argument("--extend-window", type=_non_negative_int, default=86400,
                        help="seconds after its expiry a rental can still be extended, while its device has not "
                             "checked in since and keeps it frozen (default 86400)")
    parser.add_argument("--workers", type=_positive_int, default=1,
                        help="server processes sharing the port (default 1; more than 1 needs PostgreSQL)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(data_dir=args.data_dir, host=args.host, port=args.port, database_url=args.database_url,
                    port_range=args.port_range, offline_after_s=args.offline_after,
                    checkin_interval_s=args.checkin_interval, tunnel_host=args.tunnel_host,
                    tunnel_port=args.tunnel_port, tunnel_user=args.tunnel_user,
                    tunnel_host_key=args.tunnel_host_key, default_image=args.default_image,
                    web_domain=args.web_domain, web_port_range=args.web_port_range, web_scheme=args.web_scheme,
                    memory_reserve_mb=args.memory_reserve_mb, disk_reserve_gb=args.disk_reserve_gb,
                    port_quarantine_s=args.port_quarantine, max_checkin_wait_s=args.max_checkin_wait,
                    extend_window_s=args.extend_window)


def token_source(env_name: str, path: Path) -> str:
    """Where a token comes from, for the start-up message (never the token)."""
    return f"environment variable {env_name}" if os.environ.get(env_name) else str(path.resolve())


def app_from_environment():
    """The app of one worker process of --workers (uvicorn's factory), from the command line in ARGV_ENV."""
    args = build_parser().parse_args(json.loads(os.environ[ARGV_ENV]))
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return create_app(settings_from_args(args))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_args(args)
        if args.workers > 1 and not settings.resolved_database_url.startswith("postgresql"):
            raise ValueError("--workers above 1 needs a PostgreSQL --database-url (SQLite serves one process)")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # made here once (schema, token files) before any worker starts
        app = create_app(settings)
    except ValueError as exc:
        print(f"p2pvps_server: {exc}", file=sys.stderr)
        return 2
    print(f"p2pvps marketplace listening on {settings.base_url}", flush=True)
    print(f"operator token: {token_source(OPERATOR_TOKEN_ENV, settings.operator_token_file)}", flush=True)
    print(f"gateway token: {token_source(GATEWAY_TOKEN_ENV, settings.gateway_token_file)}", flush=True)
    if settings.web_enabled:
        print(f"web hosting on: {settings.web_scheme}://<label>.{settings.web_domain}/", flush=True)
    options = dict(host=settings.host, port=settings.port, log_level=args.log_level,
                   access_log=args.log_level == "debug", server_header=False,
                   # Long-poll check-ins would hold a shutdown for their whole wait; their devices retry.
                   timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    if args.workers == 1:
        uvicorn.run(app, **options)
    else:
        app.state.database.dispose()
        os.environ[ARGV_ENV] = json.dumps(argv)
        uvicorn.run("p2pvps_server.__main__:app_from_environment", factory=True, workers=args.workers, **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
