"""Stand-in for a renter's web site: python3 upstream.py NAME PORT (listens on 127.0.0.1).

GET /         -> "site NAME"
GET /stream?n=N -> N chunks (default 8), one every 0.5 s (a long response that must survive a reload)
GET /ws       -> a WebSocket (RFC 6455) handshake, then echoes one text frame back
POST /        -> reads the whole body (Content-Length or chunked), answers "got N bytes"
"""
import base64
import hashlib
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1]
PORT = int(sys.argv[2])
WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.split('?')[0] == '/stream':
            query = self.path.partition('?')[2]
            return self.stream(int(query[2:]) if query.startswith('n=') else 8)
        if self.path == '/ws':
            return self.websocket()
        body = ('site %s\n' % NAME).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        size = 0
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            while True:
                length = int(self.rfile.readline().split(b';')[0], 16)
                size += len(self.rfile.read(length))
                self.rfile.readline()
                if length == 0:
                    break
        else:
            size = len(self.rfile.read(int(self.headers.get('Content-Length', '0'))))
        body = ('got %d bytes\n' % size).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, count):
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()
        for i in range(count):
            data = ('chunk %d of %s\n' % (i, NAME)).encode()
            self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
            self.wfile.flush()
            time.sleep(0.5)
        self.wfile.write(b'0\r\n\r\n')
        self.close_connection = True

    def websocket(self):
        key = self.headers.get('Sec-WebSocket-Key', '')
        if self.headers.get('Upgrade', '').lower() != 'websocket' or not key:
            self.send_error(400, 'not a websocket request')
            return
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header('Upgrade', 'websocket')
        self.send_header('Connection', 'Upgrade')
        self.send_header('Sec-WebSocket-Accept', accept)
        self.end_headers()
        self.wfile.flush()
        head = self.rfile.read(2)
        length = head[1] & 0x7f
        if length == 126:
            length = struct.unpack('>H', self.rfile.read(2))[0]
        mask = self.rfile.read(4) if head[1] & 0x80 else b'\0\0\0\0'
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
        reply = ('%s echoes: ' % NAME).encode() + payload
        self.wfile.write(bytes([0x81, len(reply)]) + reply)
        self.wfile.flush()
        self.close_connection = True


ThreadingHTTPServer(('127.0.0.1', PORT), Handler).serve_forever()
