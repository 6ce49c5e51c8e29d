"""What a renter runs in their container for the end-to-end tests: a small web app on port 8080.

GET /            the page in ./index.html
GET /slow?s=N    answers after N seconds (holds a connection)
GET /stats       the most connections it ever had at once
GET /big?mb=N    N MiB of zeros (download through the bandwidth cap)
PUT /upload      reads and drops the body (upload through the bandwidth cap)
GET /ws          a websocket echo (RFC 6455, text frames up to 64 KiB)
Standard library only, like a renter's first app.
"""
import base64
import hashlib
import struct
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LOCK = threading.Lock()
ACTIVE = [0, 0]   # now, most


class App(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with LOCK:
            ACTIVE[0] += 1
            ACTIVE[1] = max(ACTIVE)

    def finish(self):
        with LOCK:
            ACTIVE[0] -= 1
        super().finish()

    def log_message(self, *args):
        pass

    def reply(self, body, status=200):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server API)
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/slow":
            time.sleep(float(query.get("s", ["10"])[0]))
            return self.reply(b"slow done\n")
        if url.path == "/stats":
            return self.reply(b"%d\n" % ACTIVE[1])
        if url.path == "/big":
            size = int(query.get("mb", ["1"])[0]) * 1024 * 1024
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"\0" * 65536
            for dummy in range(size // len(chunk)):
                self.wfile.write(chunk)
            return None
        if url.path == "/ws":
            return self.websocket()
        return super().do_GET()

    def do_PUT(self):  # noqa: N802 (http.server API)
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            left -= len(self.rfile.read(min(left, 65536)) or b"x" * left)
        self.reply(b"uploaded\n")

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2 or head[0] & 0x0F == 0x8:
                return None
            length = head[1] & 0x7F
            if length == 126:
                length = struct.unpack(">H", self.rfile.read(2))[0]
            mask = self.rfile.read(4)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            header = bytes([0x81, len(data)]) if len(data) < 126 else bytes([0x81, 126]) + struct.pack(">H", len(data))
            self.wfile.write(header + data)
            self.wfile.flush()


if __name__ == "__main__":
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("", int(sys.argv[1]) if len(sys.argv) > 1 else 8080), App).serve_forever()
