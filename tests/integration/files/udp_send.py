"""Send one datagram to each HOST:PORT given (multicast and broadcast allowed); stdlib only."""
import socket
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
for spec in sys.argv[1:]:
    host, port = spec.rsplit(":", 1)
    for dummy in range(3):
        try:
            sock.sendto(b"renter was here", (host, int(port)))
        except OSError as exc:
            print(spec, type(exc).__name__)
