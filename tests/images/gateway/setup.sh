#!/bin/sh
# The caddy package enabled caddy.service with Debian's example Caddyfile; the web_gateway
# role replaces that file. Nothing else to set up.
set -eu
test -x /usr/bin/caddy
