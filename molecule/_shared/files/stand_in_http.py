"""What the stand-in marketplaces share: JSON answers and the check of the bearer token.

The stand-ins import it from the directory they run from (copied next to them on the Pi).
"""
import json
from http.server import BaseHTTPRequestHandler


class JsonHandler(BaseHTTPRequestHandler):
    """Set token_file on the subclass: the file holding the token a call must bear."""
    token_file = None

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def bears_the_token(self):
        with open(self.token_file) as handle:
            token = handle.read().strip()
        return self.headers.get('Authorization') == 'Bearer %s' % token
