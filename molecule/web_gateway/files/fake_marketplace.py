"""A stand-in marketplace for the web gateway: python3 fake_marketplace.py PORT TOKEN_FILE ROUTES_FILE

Answers GET /api/v1/routes?limit=N&cursor=I from the JSON list in ROUTES_FILE (read on every
call, so a test can change it), in pages of `limit`, with the bearer token in TOKEN_FILE
(401 without it). Listens on 127.0.0.1 only. Needs stand_in_http.py (molecule/_shared/files) beside it.
"""
import json
import sys
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from stand_in_http import JsonHandler

PORT, TOKEN_FILE, ROUTES_FILE = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Handler(JsonHandler):
    token_file = TOKEN_FILE

    def do_GET(self):
        url = urlsplit(self.path)
        if not self.bears_the_token():
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
