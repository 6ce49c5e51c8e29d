"""Start a long download from one site, remove another route from the fake marketplace, time
until the timer has unrouted it, then wait for the download.

usage: unroute_during_download.py DOWNLOAD_HOST REMOVED_HOST CA_FILE ROUTES_JSON
prints one JSON object: {"unrouted_s", "download_open_at_unroute", "download_rc", "chunks"}
"""
import json
import subprocess
import sys
import time

keep, removed, cafile, routes_file = sys.argv[1:5]
download = subprocess.Popen(
    ['curl', '-sS', '-N', '--max-time', '60', '--cacert', cafile, '--resolve', '%s:443:127.0.0.1' % keep,
     'https://%s/stream?n=40' % keep], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
time.sleep(1)
with open(routes_file) as handle:
    routes = [route for route in json.load(handle) if route.get('hostname') != removed]
with open(routes_file, 'w') as handle:
    json.dump(routes, handle)
start = time.monotonic()
status = None
while time.monotonic() - start < 30:
    status = subprocess.run(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: ' + removed,
                             'http://127.0.0.1/'], capture_output=True, text=True, check=False).stdout
    if status == '404':
        break
    time.sleep(0.2)
unrouted = time.monotonic() - start if status == '404' else None
still_open = download.poll() is None
out, err = download.communicate(timeout=60)
print(json.dumps({'unrouted_s': unrouted, 'download_open_at_unroute': still_open,
                  'download_rc': download.returncode, 'chunks': out.count('chunk '), 'stderr': err[-300:]}))
