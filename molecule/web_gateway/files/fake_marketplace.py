"""A stand-in marketplace for the web gateway: python3 fake_marketplace.py PORT TOKEN_FILE ROUTES_FILE

Answers GET /api/v1/routes?limit=N&cursor=I from the JSON list in ROUTES_FILE (read on every
call, so a test can change it), in pages of `limit`, with the bearer token in TOKEN_FILE
(401 without it). Listens on 127.0.0.1 only.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORT, TOKEN_FILE, ROUTES_FILE = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        with open(TOKEN_FILE) as handle:
            token = handle.read().strip()
        if self.headers.get('Authorization') != 'Bearer %s' % token:
            return self.answer(401, {'error': 'unauthorized', 'detail': 'bad token'})
        if url.path != '/api/v1/routes':
            return self.answer(404, {'error': 'not_found', 'detail': url.path})
        query = parse_qs(url.query)
        limit = int(query.get('limit', ['500'])[0])
        start = int(query.get('cursor', ['0'])[0])
        with open(ROUTES_FILE) as handle:
            routes = json.load(handle)
        end = start + limit
        self.answer(200, {'items': routes[start:end], 'next_cursor': str(end) if end < len(routes) else None})


ThreadingHTTPServer(('127.0.0.1', PORT), Handler).serve_forever()
