"""A bounded HTTP(S) load generator (standard library only, so it runs inside a simulated Pi).

    python3 loadgen.py URL [--connect IP] [--cafile FILE] [--threads 8] [--seconds 10]

Each thread keeps one connection alive and sends GET requests back to back for `seconds`.
--connect sends the connection to IP while TLS and the Host header use the URL's name (like
curl --resolve). Prints one JSON object: requests, requests_per_s, p50_ms, p99_ms, errors.
"""
import argparse
import http.client
import json
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS for the URL's name over a TCP connection to another address (like curl --resolve)."""

    def __init__(self, address, name, port, tls):
        super().__init__(name, port, timeout=10, context=tls)
        self.address = address
        self.tls = tls

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def connection(url, connect, cafile):
    port = url.port or (443 if url.scheme == "https" else 80)
    if url.scheme == "https":
        tls = ssl.create_default_context(cafile=cafile)
        return PinnedHTTPSConnection(connect or url.hostname, url.hostname, port, tls)
    return http.client.HTTPConnection(connect or url.hostname, port, timeout=10)


def worker(url, args, deadline, latencies, errors, lock):
    conn = connection(url, args.connect, args.cafile)
    path = url.path or "/"
    mine, failed = [], 0
    while time.monotonic() < deadline:
        start = time.monotonic()
        try:
            conn.request("GET", path, headers={"Host": url.netloc})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failed += 1
            mine.append(time.monotonic() - start)
        except (OSError, http.client.HTTPException):
            failed += 1
            conn.close()
            conn = connection(url, args.connect, args.cafile)
    with lock:
        latencies.extend(mine)
        errors[0] += failed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--connect")
    parser.add_argument("--cafile")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    url = urlsplit(args.url)
    latencies, errors, lock = [], [0], threading.Lock()
    deadline = time.monotonic() + min(args.seconds, 120)
    threads = [threading.Thread(target=worker, args=(url, args, deadline, latencies, errors, lock))
               for dummy in range(min(args.threads, 64))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    count = len(latencies)
    print(json.dumps({"requests": count, "requests_per_s": count / args.seconds, "errors": errors[0],
                      "p50_ms": 1000 * latencies[count // 2] if count else None,
                      "p99_ms": 1000 * latencies[int(count * 0.99)] if count else None}))


if __name__ == "__main__":
    main()
