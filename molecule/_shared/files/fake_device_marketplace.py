"""A stand-in marketplace for one device: python3 fake_device_marketplace.py PORT TOKEN_FILE DEVICE_ID RECORD_FILE

Answers, per docs/api.md, with the bearer token in TOKEN_FILE (401 without it):
  GET  /api/v1/devices/DEVICE_ID           the device (registered once register was called)
  POST /api/v1/devices/DEVICE_ID/register  keeps facts and tunnel key, answers {device, tunnel}
  POST /api/v1/devices/DEVICE_ID/checkin   no lease (held up to ?wait= seconds when the device
                                           sends back the lease_etag, as a long-poll is)
and appends one JSON line per request to RECORD_FILE (method, path, query, body, whether the
token was right; never the token). Listens on 127.0.0.1 only. Needs stand_in_http.py beside it.
"""
import datetime
import json
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from stand_in_http import JsonHandler

PORT, TOKEN_FILE, DEVICE_ID, RECORD_FILE = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
PREFIX = '/api/v1/devices/' + DEVICE_ID
# Where the device's tunnel goes: nothing listens on port 2 of its loopback (the unit keeps retrying).
TUNNEL = {'host': '127.0.0.1', 'port': 2, 'user': 'tunnel', 'remote_port': 20001, 'web_remote_port': None,
          'host_key': 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPBfN1SChw4bmW39X1KVxNe6g2adPQdY89A2Hg1ipBR+'}
LEASE_ETAG = 'no-lease'
LOCK = threading.Lock()
DEVICE = {'id': DEVICE_ID, 'name': 'molecule-pi', 'registered': False, 'facts': {}, 'tunnel_public_key': None,
          'tunnel': None, 'lease': None}


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


class Handler(JsonHandler):
    token_file = TOKEN_FILE

    def request_body(self):
        length = int(self.headers.get('Content-Length') or 0)
        try:
            return json.loads(self.rfile.read(length) or b'{}')
        except ValueError:
            return None

    def handle_call(self, method):
        url = urlsplit(self.path)
        body = self.request_body() if method == 'POST' else None
        authorized = self.bears_the_token()
        with LOCK, open(RECORD_FILE, 'a') as record:
            record.write(json.dumps({'method': method, 'path': url.path, 'query': parse_qs(url.query),
                                     'body': body, 'authorized': authorized, 'at': now()}) + '\n')
        if not authorized:
            return self.answer(401, {'error': 'unauthorized', 'detail': 'bad token'})
        if body is None and method == 'POST':
            return self.answer(400, {'error': 'malformed_json', 'detail': 'body is not JSON'})
        if method == 'GET' and url.path == PREFIX:
            with LOCK:
                return self.answer(200, DEVICE)
        if method == 'POST' and url.path == PREFIX + '/register':
            with LOCK:
                DEVICE.update(registered=True, facts=body.get('facts'), tunnel_public_key=body.get('tunnel_public_key'),
                              tunnel=TUNNEL)
                return self.answer(200, {'device': DEVICE, 'tunnel': TUNNEL})
        if method == 'POST' and url.path == PREFIX + '/checkin':
            wait = int(parse_qs(url.query).get('wait', ['0'])[0])
            if wait and body.get('lease_etag') == LEASE_ETAG:
                time.sleep(min(wait, 600))
            return self.answer(200, {'lease': None, 'lease_etag': LEASE_ETAG, 'checkin_interval_s': 120,
                                     'server_time': now(), 'receipts_acknowledged': [], 'receipts_refused': []})
        return self.answer(404, {'error': 'not_found', 'detail': url.path})

    def do_GET(self):
        self.handle_call('GET')

    def do_POST(self):
        self.handle_call('POST')


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(('127.0.0.1', PORT), Handler).serve_forever()
