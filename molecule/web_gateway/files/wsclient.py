"""Minimal WebSocket client over TLS: wsclient.py HOST PORT CAFILE MESSAGE -> prints the echo."""
import base64
import os
import socket
import ssl
import sys

host, port, cafile, message = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
context = ssl.create_default_context(cafile=cafile)
context.set_alpn_protocols(['http/1.1'])
sock = context.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=10), server_hostname=host)
key = base64.b64encode(os.urandom(16)).decode()
sock.sendall(('GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
              'Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n' % (host, key)).encode())
head = b''
while b'\r\n\r\n' not in head:
    data = sock.recv(1)
    if not data:
        sys.exit('connection closed during the handshake: %r' % head)
    head += data
status = head.split(b'\r\n', 1)[0].decode()
print(status)
if ' 101 ' not in status + ' ':
    sys.exit(1)
mask = os.urandom(4)
sock.sendall(bytes([0x81, 0x80 | len(message)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(message)))
frame = sock.recv(2)
payload = b''
while len(payload) < frame[1] & 0x7f:
    payload += sock.recv(frame[1] - len(payload))
print(payload.decode())
