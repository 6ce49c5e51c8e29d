"""Listen on the device for what a renter might send it over UDP: mDNS, SSDP and broadcasts.

    python3 udp_listen.py BRIDGE_ADDRESS SECONDS

Joins 224.0.0.251 (mDNS, port 5353) and 239.255.255.250 (SSDP, port 1900) on the interface of
BRIDGE_ADDRESS and listens on port 9999 for broadcasts; prints the (port, sender) pairs seen, as JSON.
"""
import json
import select
import socket
import sys
import time

address, seconds = sys.argv[1], float(sys.argv[2])
sockets = []
for group, port in (("224.0.0.251", 5353), ("239.255.255.250", 1900), (None, 9999)):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("", port))
    if group:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                        socket.inet_aton(group) + socket.inet_aton(address))
    sockets.append(sock)
seen = []
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    ready, dummy, dummy = select.select(sockets, [], [], max(0.0, deadline - time.monotonic()))
    for sock in ready:
        dummy, sender = sock.recvfrom(2048)
        seen.append([sock.getsockname()[1], sender[0]])
print(json.dumps(seen))
