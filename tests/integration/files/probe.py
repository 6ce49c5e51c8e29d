"""Connect to each HOST:PORT given; print {target: "open <banner>" | "blocked <error>"} as JSON (stdlib only)."""
import json
import socket
import sys

results = {}
for spec in sys.argv[1:]:
    host, port = spec.rsplit(':', 1)
    try:
        family, kind, proto, dummy, address = socket.getaddrinfo(host, int(port), 0, socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.settimeout(2)
        sock.connect(address)
        sock.settimeout(1)
        try:
            data = sock.recv(40)
        except OSError:
            data = b''
        results[spec] = 'open ' + data.decode(errors='replace').strip()
    except OSError as exc:
        results[spec] = 'blocked ' + type(exc).__name__
print(json.dumps(results, indent=1))
