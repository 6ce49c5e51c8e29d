#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: tunnel_keys
short_description: Authorise each device's tunnel key for its own ports only, and end the sessions of keys that lost it
version_added: 0.1.0
description:
  - Runs on a tunnel server (role p2pvps.fleet.tunnel_server). Takes the complete list of devices -
    from O(devices), or from the marketplace (C(GET /api/v1/tunnel-keys) with the gateway token)
    when O(devices) is not given - and writes the tunnel user's C(authorized_keys) so that each
    device key may listen on its own port, and on its own web port on the server's loopback,
    and do nothing else
    (C(restrict,port-forwarding,permitlisten="PORT",permitlisten="localhost:WEB_PORT")).
  - Every entry is checked on its own. The key must be one C(ssh-ed25519) or
    C(ecdsa-sha2-nistp256/384/521) public key line without options; the port must be an integer
    from O(port_min) to O(port_max), the web port (optional) from O(web_port_min) to
    O(web_port_max); the name (or the marketplace's C(device_id)), written as the key's
    comment, 1-64 characters of V(A-Z), V(a-z), V(0-9), V(.), V(_), V(@) and V(-). Entries that
    share a port or a key are all refused. A bad entry is skipped and reported in
    RV(skipped_entries); it never blocks the rest of the fleet.
  - Then the tunnel user's live SSH connections are listed and each is matched to the key sshd
    logged when it let that connection in (the journal, C(Accepted publickey ... SHA256:...),
    looked up once per connection). A connection whose key is no longer in the file - a device
    deleted or decommissioned at the marketplace, a key replaced - is ended at once, and so is
    one whose key the journal does not tell. Beyond O(max_sessions_per_key) connections of one
    key, the newest are ended. Ending a connection frees its ports at once.
  - Fail-safe. On an API error the file and the sessions are left as they are, the error is in
    RV(api_error) and a warning, and the task fails only with O(fail_on_api_error=true).
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
      - The file is not written and no session is ended; RV(ended_sessions) lists the sessions that would end.
  diff_mode:
    support: full
    details:
      - The diff shows the authorised devices before and after as name -> ports and key fingerprint.
  idempotent:
    support: full
    details:
      - An unchanged list writes nothing; sessions end only when they break the rules above.
options:
  devices:
    description:
      - >-
        The complete list of devices; a device not listed loses its tunnel. Each entry is a dict
        with C(key), the device's tunnel public key (C(ssh-ed25519 BASE64 [comment])); C(port), the
        only port it may listen on (on every address, for renters); C(web_port), its web port,
        where it may listen on the server's loopback only (optional, for web hosting); and
        C(name), written as the key's comment (optional, default C(device-port-PORT); the
        marketplace's C(device_id) is taken as the name).
      - Ports may be given as integers or strings of digits. Unknown fields are ignored.
      - When not given, the list is read from the marketplace (O(marketplace_url) and the gateway token).
    type: list
    elements: dict
  authorized_keys_path:
    description:
      - The tunnel user's C(authorized_keys) (sshd's C(AuthorizedKeysFile) for that user); its directory
        must exist. Written atomically, mode C(0644), owned by root.
    type: path
    default: /etc/ssh/p2pvps-tunnel/authorized_keys
  user:
    description: The tunnel user whose connections are checked.
    type: str
    default: tunnel
  port_min:
    description: Lowest port a device may have (the marketplace's C(--port-range)).
    type: int
    default: 1024
  port_max:
    description: Highest port a device may have.
    type: int
    default: 65535
  end_sessions:
    description: End the connections of keys that are no longer authorised, and those beyond the per-key cap.
    type: bool
    default: true
  max_sessions_per_key:
    description:
      - Most live connections of one device key; V(0) for no cap. The default lets a device reconnect
        while its old connection is still being reaped.
    type: int
    default: 2
  state_dir:
    description: Where the key of each live connection is remembered between runs (root-only).
    type: path
    default: /var/lib/p2pvps-tunnel-keys
requirements:
  - journalctl (systemd's journal holds sshd's log)
notes:
  - Run it often (the role's timer runs it every 15 seconds with the marketplace as the source) so
    that a deleted or decommissioned device loses its tunnel within seconds.
  - Connections are told apart by sshd's own log on this server, which devices cannot write to.
    Without a record (the journal was rotated or is off), a connection is ended; an authorised
    device reconnects within seconds.
seealso:
  - module: p2pvps.fleet.web_routes
  - name: AUTHORIZED_KEYS FILE FORMAT
    description: The key options written (restrict, port-forwarding, permitlisten).
    link: https://man.openbsd.org/sshd.8#AUTHORIZED_KEYS_FILE_FORMAT
"""

EXAMPLES = r"""
- name: Authorise the devices of this play (what the tunnel_server role runs)
  p2pvps.fleet.tunnel_keys:
    devices:
      - {name: pi-kitchen, key: "ssh-ed25519 AAAAC3Nza... tunnel@pi-kitchen", port: 20001, web_port: 30001}
      - {name: pi-garage, key: "ssh-ed25519 AAAAC3Nza... tunnel@pi-garage", port: 20002}

- name: Follow the marketplace (what the role's timer runs)
  p2pvps.fleet.tunnel_keys:
    marketplace_url: https://market.example.org
    gateway_token_file: /etc/p2pvps/gateway_token
  register: tunnel

- name: Show what was skipped
  ansible.builtin.debug:
    msg: "{{ tunnel.skipped_entries }}"
  when: tunnel.skipped_count > 0
"""

RETURN = r"""
msg:
  description: One line for the operator.
  returned: success
  type: str
  sample: 120 device keys (1 entry skipped), file changed, 1 session ended
devices:
  description: How many device keys are authorised after this run (V(null) on an API error).
  returned: always
  type: int
  sample: 120
skipped_entries:
  description: Entries that were not authorised (at most 100 listed; RV(skipped_count) has the total).
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: Position of the entry in the list (from 0).
      type: int
    name:
      description: A short, printable excerpt of its name (V(null) without one).
      type: str
    reason:
      description: Why it was skipped.
      type: str
  sample:
    - {index: 3, name: pi-old, reason: "key does not start with an accepted key type: ..."}
skipped_count:
  description: How many entries were skipped.
  returned: always
  type: int
  sample: 1
sessions:
  description: Live connections of the tunnel user found before any was ended (V(null) when not checked).
  returned: always
  type: int
  sample: 119
ended_sessions:
  description: Connections ended by this run (or that would be, in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: The connection's sshd process.
      type: int
    fingerprint:
      description: Its key's SHA256 fingerprint (V(null) when unknown).
      type: str
    reason:
      description: Why it was ended.
      type: str
  sample:
    - {pid: 4242, fingerprint: "SHA256:Vb1v...", reason: its key is no longer authorised}
api_error:
  description: Why the list could not be read; V(null) when it was (or when O(devices) was given).
  returned: always
  type: str
  sample: null
authorized_keys_path:
  description: The file.
  returned: always
  type: str
  sample: /etc/ssh/p2pvps-tunnel/authorized_keys
"""

import os
import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.p2pvps.fleet.plugins.module_utils import _tunnel_keys
from ansible_collections.p2pvps.fleet.plugins.module_utils._api import (
    MARKETPLACE_GATEWAY_ARGS,
    check_gateway_params,
    exit_on_api_error,
    read_gateway_list,
)
from ansible_collections.p2pvps.fleet.plugins.module_utils._state import (
    read_parsed,
    read_text,
    write_atomic,
    write_json_atomic,
)

MAX_SKIPPED_LISTED = 100
KNOWN_SESSIONS_FILE = 'sessions.json'
#: About 70 bytes a session: room for over 200,000 sessions.
KNOWN_SESSIONS_MAX_BYTES = 16 * 1024 * 1024


def read_devices(module):
    """(the device list, None) or (None, the API error)."""
    if module.params['devices'] is not None:
        return module.params['devices'], None
    return read_gateway_list(module, lambda client: client.iter_tunnel_keys(page_size=module.params['page_size']))


def read_known(module, path):
    """{"pid:start": fingerprint} an earlier run remembered; {} when there is none (with a warning when unreadable)."""
    try:
        known, warning = read_parsed(path, 'remembered tunnel sessions file', _known_sessions,
                                     max_bytes=KNOWN_SESSIONS_MAX_BYTES)
    except OSError as exc:
        known, warning = None, 'remembered tunnel sessions file %s is unreadable and ignored: %s' % (path, to_native(exc))
    if warning:
        module.warn(warning)
    return known or {}


def _known_sessions(raw):
    if not isinstance(raw, dict):
        return {}
    return dict((key, value) for key, value in raw.items() if isinstance(key, str) and isinstance(value, str))


def check_sessions(module, entries, result):
    """End the connections whose key lost its place (or would, in check mode)."""
    params = module.params
    try:
        uid = pwd.getpwnam(params['user']).pw_uid
    except KeyError:
        return   # no tunnel user yet, so no connection of it either
    known_path = os.path.join(params['state_dir'], KNOWN_SESSIONS_FILE)
    journalctl = module.get_bin_path('journalctl', required=True)
    try:
        sessions, remember = _tunnel_keys.live_sessions(uid, params['user'], read_known(module, known_path), journalctl)
    except OSError as exc:
        module.fail_json(msg='the tunnel sessions could not be told apart: %s' % to_native(exc), **result)
    result['sessions'] = len(sessions)
    ending = _tunnel_keys.sessions_to_end(sessions, _tunnel_keys.fingerprints(entries),
                                          params['max_sessions_per_key'])
    result['ended_sessions'] = [{'pid': session.pid, 'fingerprint': session.fingerprint, 'reason': reason}
                                for session, reason in ending]
    if module.check_mode:
        return
    for session, dummy in ending:
        _tunnel_keys.end_session(session)
    os.makedirs(params['state_dir'], mode=0o700, exist_ok=True)
    ended = set(session.pid for session, dummy in ending)
    write_json_atomic(known_path, dict((handle, fingerprint) for handle, fingerprint in remember.items()
                                       if int(handle.split(':')[0]) not in ended))


def summary(result, check_mode):
    if result['api_error']:
        return 'authorized_keys and sessions kept as they are - API error: %s' % result['api_error']
    line = '%d device keys' % result['devices']
    if result['skipped_count']:
        line += ' (%d %s skipped)' % (result['skipped_count'], 'entry' if result['skipped_count'] == 1 else 'entries')
    line += ', file %s' % (('would change' if check_mode else 'changed') if result['file_changed'] else 'unchanged')
    if result['ended_sessions']:
        line += ', %d %s %s' % (len(result['ended_sessions']), 'session' if len(result['ended_sessions']) == 1
                                else 'sessions', 'would end' if check_mode else 'ended')
    return line


def check_params(module):
    params = module.params
    if not 1 <= params['port_min'] <= params['port_max'] <= 65535:
        module.fail_json(msg='port_min and port_max must be ports with port_min <= port_max')
    check_gateway_params(module)
    if params['max_sessions_per_key'] < 0:
        module.fail_json(msg='max_sessions_per_key must be 0 (no cap) or more')


def run(module):
    params = module.params
    path = params['authorized_keys_path']
    result = {'changed': False, 'devices': None, 'skipped_entries': [], 'skipped_count': 0, 'sessions': None,
              'ended_sessions': [], 'api_error': None, 'authorized_keys_path': path, 'file_changed': False}
    items, api_error = read_devices(module)
    if api_error:
        exit_on_api_error(module, api_error, result,
                          ('device keys not read', 'authorized_keys and the sessions were kept as they are'), summary)

    ranges = _tunnel_keys.Ranges(params['port_min'], params['port_max'], params['web_port_min'],
                                 params['web_port_max'])
    entries, skipped = _tunnel_keys.parse_entries(items, ranges)
    result.update(devices=len(entries), skipped_entries=skipped[:MAX_SKIPPED_LISTED], skipped_count=len(skipped))
    if skipped:
        module.warn('%d device key entries skipped, first: #%d %s: %s' % (
            len(skipped), skipped[0]['index'], skipped[0]['name'], skipped[0]['reason']))
    previous = read_text(path)
    text = _tunnel_keys.render(entries)
    result['file_changed'] = text != previous
    if module._diff:
        result['diff'] = {'before_header': path, 'after_header': path,
                          'before': _tunnel_keys.summary_of_file(previous), 'after': _tunnel_keys.summary_of(entries)}
    if result['file_changed'] and not module.check_mode:
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            module.fail_json(msg='the directory of authorized_keys_path %s does not exist' % path, **result)
        write_atomic(path, text)
    if params['end_sessions']:
        check_sessions(module, entries, result)
    result['changed'] = result['file_changed'] or bool(result['ended_sessions'])
    module.exit_json(msg=summary(result, module.check_mode), **result)


def main():
    argument_spec = dict(MARKETPLACE_GATEWAY_ARGS)
    argument_spec.update(
        # Entries are checked one by one by the module (a bad one is skipped), not by Ansible.
        devices=dict(type='list', elements='dict'),
        authorized_keys_path=dict(type='path', default='/etc/ssh/p2pvps-tunnel/authorized_keys'),
        user=dict(type='str', default='tunnel'),
        port_min=dict(type='int', default=1024),
        port_max=dict(type='int', default=65535),
        end_sessions=dict(type='bool', default=True),
        max_sessions_per_key=dict(type='int', default=2, no_log=False),
        state_dir=dict(type='path', default='/var/lib/p2pvps-tunnel-keys'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_params(module)
    try:
        run(module)
    except OSError as exc:
        module.fail_json(msg='%s: %s' % (module.params['authorized_keys_path'], to_native(exc)))


if __name__ == '__main__':
    main()
