# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""The web gateway's routes: validate the marketplace's route list, render it for Caddy.

Pure functions (no network, no Caddy, no files). Nothing from the marketplace
is trusted: every entry is checked on its own, a bad entry is skipped with a short reason
(never its raw value beyond a short, printable excerpt of the hostname), and the others are
kept. The rendered file holds one Caddy site block per hostname that only imports the
route snippet of the role's Caddyfile, so every policy (TLS, limits, error pages, logs)
stays in the role's template.
"""

from __future__ import annotations

import collections
import re

#: One DNS label: 1-63 of [a-z0-9-], no leading or trailing "-" (lower case only).
LABEL_RE = re.compile(r'[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?')
#: The web domain as the marketplace validates it: lower-case labels of [a-z0-9-], 1-63 each.
DOMAIN_LABEL_RE = re.compile(r'[a-z0-9-]{1,63}')
MAX_DOMAIN = 200
#: Device and lease ids, as the rental module accepts lease ids.
ID_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]{0,63}')
#: Name of the Caddyfile snippet each route imports.
SNIPPET_RE = re.compile(r'[A-Za-z0-9_-]{1,64}')
#: Longest excerpt of a bad hostname shown in a skip reason.
MAX_SHOWN = 64

HEADER = (
    '# Managed by p2pvps.fleet.web_routes from the marketplace\'s route list; rewritten when it changes.\n'
    '# Do not edit: each site only imports the snippet "%s"; every policy is in the Caddyfile.\n'
)

_UNPRINTABLE_RE = re.compile(r'[^\x21-\x7e]+')
_BLOCK_RE = re.compile(r'^http://([^\s,{}]+), https://\1 \{\n\timport [A-Za-z0-9_-]+ ([0-9]{1,5})\n\}$',
                       re.MULTILINE)

Route = collections.namedtuple('Route', 'hostname port device_id lease_id')


def check_domain(domain):
    """The problem with a web domain as a string, or None when it is valid."""
    if not isinstance(domain, str) or not domain:
        return 'the web domain is empty'
    if len(domain) > MAX_DOMAIN:
        return 'the web domain is longer than %d characters' % MAX_DOMAIN
    if not all(DOMAIN_LABEL_RE.fullmatch(label) for label in domain.split('.')):
        return ('the web domain must be a lower-case DNS name (labels of 1-63 characters a-z, 0-9 '
                'and "-", separated by dots)')
    return None


def shown(value):
    """A short, printable excerpt of a value from the marketplace, for messages."""
    if not isinstance(value, str):
        return None
    text = _UNPRINTABLE_RE.sub('?', value)
    if len(text) > MAX_SHOWN:
        text = text[:MAX_SHOWN - 3] + '...'
    return text


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_hostname(hostname, domain):
    """The problem with a route's hostname, or None: it must be <one label>.<domain>."""
    if hostname is None:
        return 'no hostname'
    if not isinstance(hostname, str):
        return 'hostname is not a string'
    suffix = '.' + domain
    if not hostname.endswith(suffix):
        return 'hostname is not under .%s' % domain
    if not LABEL_RE.fullmatch(hostname[:-len(suffix)]):
        return 'hostname is not one lower-case DNS label + .%s' % domain
    return None


def check_port(port, port_min, port_max):
    """The problem with a route's port, or None."""
    if port is None:
        return 'no port'
    if not _is_int(port):
        return 'port is not an integer'
    if not port_min <= port <= port_max:
        return 'port %d is outside %d-%d' % (port, port_min, port_max)
    return None


def check_id(value, what):
    if value is None:
        return 'no %s' % what
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        return '%s is not a valid id' % what
    return None


def check_entry(item, domain, port_min, port_max):
    """(Route, None) for a valid entry, (None, reason) otherwise. Unknown fields are ignored."""
    if not isinstance(item, dict):
        return None, 'not an object'
    problem = (check_hostname(item.get('hostname'), domain)
               or check_port(item.get('port'), port_min, port_max)
               or check_id(item.get('device_id'), 'device_id')
               or check_id(item.get('lease_id'), 'lease_id'))
    if problem:
        return None, problem
    return Route(item['hostname'], item['port'], item['device_id'], item['lease_id']), None


def parse_routes(items, domain, port_min, port_max):
    """(routes sorted by hostname, skipped entries) from the marketplace's route items.

    Each skipped entry is {index, hostname, reason}: its position in the whole list, a short
    excerpt of its hostname (None when it has none) and why it was skipped. Entries that
    share a hostname or a port are all skipped: which of them is right cannot be told, and
    routing one to the wrong device would show a renter's site under another's name.
    """
    valid = []
    skipped = []
    for index, item in enumerate(items):
        route, problem = check_entry(item, domain, port_min, port_max)
        if problem:
            hostname = item.get('hostname') if isinstance(item, dict) else None
            skipped.append({'index': index, 'hostname': shown(hostname), 'reason': problem})
        else:
            valid.append((index, route))
    hostnames = collections.Counter(route.hostname for dummy, route in valid)
    ports = collections.Counter(route.port for dummy, route in valid)
    routes = []
    for index, route in valid:
        if hostnames[route.hostname] > 1:
            reason = 'hostname used by %d entries' % hostnames[route.hostname]
        elif ports[route.port] > 1:
            reason = 'port %d used by %d entries' % (route.port, ports[route.port])
        else:
            routes.append(route)
            continue
        skipped.append({'index': index, 'hostname': route.hostname, 'reason': reason})
    skipped.sort(key=lambda entry: entry['index'])
    return sorted(routes), skipped


def render(routes, snippet):
    """The routes file: a header, then per route a comment and one site block (HTTP and HTTPS)."""
    if not SNIPPET_RE.fullmatch(snippet):
        raise ValueError('invalid snippet name')
    lines = [HEADER % snippet]
    for route in sorted(routes):
        lines.append('\n# lease %s on device %s\n' % (route.lease_id, route.device_id))
        host = route.hostname
        lines.append('http://%s, https://%s {\n\timport %s %d\n}\n' % (host, host, snippet, route.port))
    return ''.join(lines)


def routes_in_file(text):
    """{hostname: port} of the site blocks in a routes file written by render() (for the diff)."""
    if not text:
        return {}
    return dict((host, int(port)) for host, port in _BLOCK_RE.findall(text))


def as_map(routes):
    """{hostname: port} of routes."""
    return dict((route.hostname, route.port) for route in routes)
