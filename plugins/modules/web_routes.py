#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: web_routes
short_description: Route each lease's web hostname to its device through the tunnel server's Caddy
version_added: 0.1.0
description:
  - Runs on a tunnel server with the web gateway (role p2pvps.fleet.web_gateway). Reads every
    page of the marketplace's web routes (C(GET /api/v1/routes) with the gateway token), one
    per active lease - a public hostname and the pinned web port its device forwards to the
    tunnel server's loopback - and writes them as a Caddyfile snippet of routes, then reloads
    Caddy.
  - Every entry is validated on its own. The hostname must be one DNS label (1-63 of V(a-z),
    V(0-9) and V(-), lower case, no leading or trailing V(-)) followed by C(.) and O(web_domain);
    the port must be an integer from O(web_port_min) to O(web_port_max); C(device_id) and
    C(lease_id) must be ids like the marketplace's. Unknown fields are ignored. Entries that
    share a hostname or a port are all refused. A bad entry is skipped and reported in
    RV(skipped_entries) with a short reason; it never blocks the others.
  - The routes file holds one site block per hostname, for HTTP and HTTPS, that only imports
    the snippet O(route_snippet) of the role's Caddyfile (for example
    C(import p2pvps_route 30001)), so every policy - TLS, redirect to HTTPS, limits, error pages,
    logs - stays in the role's template. The file is written atomically and only when it
    changed; then O(reload_command) runs. When the reload fails, the previous file is put back
    and the task fails with the command's error.
  - Fail-safe. On any API error (marketplace unreachable, HTTP 4xx or 5xx, an answer that is
    not a route page) the routes file is left untouched - live routes are never dropped because
    the marketplace hiccupped - the error is reported in RV(api_error) and as a warning, and the
    task fails only with O(fail_on_api_error=true). A valid empty route list removes every route.
author:
  - p2pvps.fleet developers (@p2pvps)
extends_documentation_fragment:
  - p2pvps.fleet._marketplace.connection
  - p2pvps.fleet._marketplace.gateway
  - p2pvps.fleet._marketplace.attributes
attributes:
  check_mode:
    support: full
    details:
      - The routes are read from the marketplace in check mode too; nothing is written or reloaded.
  diff_mode:
    support: full
    details:
      - The diff shows the routes before and after as hostname -> port.
  idempotent:
    support: full
    details:
      - Holds while the marketplace's route list stays the same; an unchanged file is neither
        written nor reloaded.
options:
  web_domain:
    description:
      - The marketplace's web domain (its C(--web-domain)); every hostname must be one label
        under it, for example V(alice-k3j9xq.web.example.org) for V(web.example.org).
    type: str
    required: true
  routes_file:
    description:
      - The Caddyfile snippet of routes the role's Caddyfile imports. Its directory must exist.
      - Written with mode C(0644) (it holds hostnames, ports and ids, no secret).
    type: path
    default: /etc/caddy/p2pvps-routes.caddy
  route_snippet:
    description:
      - Name of the snippet each route imports with its port as the only argument; the role's
        Caddyfile defines it.
    type: str
    default: p2pvps_route
  reload_command:
    description:
      - Command (argument list, no shell) that makes Caddy load the changed routes file; run
        only when the file changed. An empty list reloads nothing.
      - Debian's C(caddy.service) reloads with C(caddy reload), which loads the new
        configuration gracefully (requests in flight complete) or, when it is invalid, keeps
        the old one and fails.
    type: list
    elements: str
    default: [systemctl, reload, caddy.service]
notes:
  - The gateway token may read the route list only; device tokens are refused (HTTP 403), the
    operator token works too.
  - Run it often (the role's timer runs it every 15 seconds) so that a new lease is routed, and
    an ended one unrouted, within two intervals.
seealso:
  - module: p2pvps.fleet.rental
  - name: Caddyfile import directive
    description: How the routes file and its snippet are read.
    link: https://caddyserver.com/docs/caddyfile/directives/import
"""

EXAMPLES = r"""
- name: Route the leases' web hostnames (what the web_gateway role's timer runs)
  p2pvps.fleet.web_routes:
    marketplace_url: https://market.example.org
    gateway_token_file: /etc/p2pvps/gateway_token
    web_domain: web.example.org
  register: routes

- name: Show what was skipped
  ansible.builtin.debug:
    msg: "{{ routes.skipped_entries }}"
  when: routes.skipped_count > 0

- name: Write the routes somewhere else without reloading anything (a test)
  p2pvps.fleet.web_routes:
    marketplace_url: http://127.0.0.1:8080
    gateway_token: "{{ vault_gateway_token }}"
    web_domain: web.test
    routes_file: /tmp/routes.caddy
    reload_command: []
    fail_on_api_error: true
"""

RETURN = r"""
msg:
  description: One line for the operator - routes, skipped entries, what changed, the API error if any.
  returned: success
  type: str
  sample: 12 routes (1 entry skipped), routes file changed, caddy reloaded
routes:
  description:
    - The routes after this run, sorted by hostname.
    - V(null) on an API error (the routes file was kept as it is).
  returned: always
  type: list
  elements: dict
  contains:
    hostname:
      description: The public hostname.
      type: str
    port:
      description: The device's web port on the tunnel server's loopback.
      type: int
    device_id:
      description: The device.
      type: str
    lease_id:
      description: The lease.
      type: str
  sample:
    - {hostname: alice-k3j9xq.web.example.org, port: 30001, device_id: 9b2f..., lease_id: 5f2d...}
skipped_entries:
  description:
    - Entries that were not routed (at most 100 are listed; RV(skipped_count) has the total).
    - Not named C(skipped), which Ansible reads as "the task was skipped".
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: Position of the entry in the marketplace's route list (from 0).
      type: int
    hostname:
      description: A short, printable excerpt of the entry's hostname (V(null) without one).
      type: str
    reason:
      description: Why it was skipped.
      type: str
  sample:
    - {index: 2, hostname: Evil.web.example.org, reason: hostname is not one lower-case DNS label + .web.example.org}
skipped_count:
  description: How many entries were skipped.
  returned: always
  type: int
  sample: 1
api_error:
  description: Why the routes could not be read; V(null) when they were.
  returned: always
  type: str
  sample: "GET http://127.0.0.1:8080/api/v1/routes: rejected, HTTP 403 forbidden"
reloaded:
  description: Whether O(reload_command) ran (and succeeded).
  returned: always
  type: bool
  sample: true
routes_file:
  description: The routes file.
  returned: always
  type: str
  sample: /etc/caddy/p2pvps-routes.caddy
diff:
  description: The routes before and after, as hostname -> port.
  returned: when diff mode is on
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.p2pvps.fleet.plugins.module_utils import _state, _web_routes
from ansible_collections.p2pvps.fleet.plugins.module_utils._api import (
    MARKETPLACE_GATEWAY_ARGS,
    check_gateway_params,
    exit_on_api_error,
    read_gateway_list,
    truncate,
)

#: Most skipped entries listed in the result.
MAX_SKIPPED_LISTED = 100


def read_items(module):
    """(every route item, None) or (None, the API error)."""
    return read_gateway_list(module, lambda client: client.iter_routes(page_size=module.params['page_size']))


def reload_gateway(module, previous):
    """Run the reload command; on failure put `previous` (None: no file) back and fail."""
    command = module.params['reload_command']
    if not command:
        return False
    rc, out, err = module.run_command(command)
    if rc == 0:
        return True
    path = module.params['routes_file']
    if previous is None:
        os.unlink(path)
    else:
        _state.write_atomic(path, previous)
    module.fail_json(msg='reload of the web gateway failed (%s, rc %d): %s; the previous routes file was put back'
                     % (' '.join(command[:3]), rc, truncate(err or out or 'no output')),
                     changed=False, routes_file=path)


def summary(result, check_mode):
    line = '%d routes' % len(result['routes'] or [])
    if result['skipped_count']:
        line += ' (%d %s skipped)' % (result['skipped_count'],
                                      'entry' if result['skipped_count'] == 1 else 'entries')
    if result['api_error']:
        return 'routes file kept as it is - API error: %s' % result['api_error']
    if not result['changed']:
        line += ', routes file unchanged'
    else:
        line += ', routes file %s' % ('would change' if check_mode else 'changed')
    if result['reloaded']:
        line += ', caddy reloaded'
    return line


def check_params(module):
    params = module.params
    problem = _web_routes.check_domain(params['web_domain'])
    if problem:
        module.fail_json(msg=problem)
    check_gateway_params(module)
    if not _web_routes.SNIPPET_RE.fullmatch(params['route_snippet']):
        module.fail_json(msg='route_snippet must be a snippet name of A-Z, a-z, 0-9, "_" and "-"')


def run(module):
    params = module.params
    path = params['routes_file']
    previous = _state.read_text(path)
    before = _web_routes.routes_in_file(previous)
    result = {'changed': False, 'routes': None, 'skipped_entries': [], 'skipped_count': 0, 'api_error': None,
              'reloaded': False, 'routes_file': path}

    items, api_error = read_items(module)
    if api_error:
        exit_on_api_error(module, api_error, result,
                          ('web routes not read', 'the routes file was kept as it is'), summary)

    routes, skipped = _web_routes.parse_routes(items, params['web_domain'], params['web_port_min'],
                                               params['web_port_max'])
    result['routes'] = [route._asdict() for route in routes]
    result['skipped_entries'] = skipped[:MAX_SKIPPED_LISTED]
    result['skipped_count'] = len(skipped)
    if skipped:
        module.warn('%d web route entries skipped, first: #%d %s' % (
            len(skipped), skipped[0]['index'], skipped[0]['reason']))
    text = _web_routes.render(routes, params['route_snippet'])
    result['changed'] = text != previous
    if module._diff:
        result['diff'] = {'before_header': path, 'after_header': path,
                          'before': before, 'after': _web_routes.as_map(routes)}
    if result['changed'] and not module.check_mode:
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            module.fail_json(msg='the directory of routes_file %s does not exist' % path, **result)
        _state.write_atomic(path, text)
        result['reloaded'] = reload_gateway(module, previous)
    module.exit_json(msg=summary(result, module.check_mode), **result)


def main():
    argument_spec = dict(MARKETPLACE_GATEWAY_ARGS)
    argument_spec.update(
        web_domain=dict(type='str', required=True),
        routes_file=dict(type='path', default='/etc/caddy/p2pvps-routes.caddy'),
        route_snippet=dict(type='str', default='p2pvps_route'),
        reload_command=dict(type='list', elements='str', default=['systemctl', 'reload', 'caddy.service']),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_params(module)
    try:
        run(module)
    except OSError as exc:
        module.fail_json(msg='routes file %s: %s' % (module.params['routes_file'], to_native(exc)))


if __name__ == '__main__':
    main()
