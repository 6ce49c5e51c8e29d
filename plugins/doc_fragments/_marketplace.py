# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this doc fragment is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

from __future__ import annotations


class ModuleDocFragment(object):

    # The device's identity and token (module_utils/_api.py, MARKETPLACE_COMMON_ARGS); modules that use
    # it also use CONNECTION.
    DOCUMENTATION = r"""
options:
  device_id:
    description:
      - Id of this device at the marketplace (returned when the operator created the device).
      - If not set, the value of the E(P2PVPS_DEVICE_ID) environment variable is used.
        One of them is required.
    type: str
  device_token:
    description:
      - The device's bearer token (issued once, when the operator created the device).
      - If not set, the value of the E(P2PVPS_DEVICE_TOKEN) environment variable is used.
      - Prefer O(device_token_file); O(device_token_file) wins when both are set.
      - The token is never logged, and never part of an error message or of the diff.
    type: str
  device_token_file:
    description:
      - Path of a file on the managed host holding the device token (surrounding white space
        is ignored). The file must exist; it should be mode C(0600), a warning says when
        every user can read it.
      - Takes precedence over O(device_token).
    type: path
"""

    # How every module reaches the marketplace API (module_utils/_api.py, CONNECTION_ARGS).
    CONNECTION = r"""
options:
  marketplace_url:
    description:
      - Base URL of the P2P VPS marketplace API, for example V(https://market.example.org).
      - Must be C(https://) or C(http://), without credentials, query string or fragment.
      - If not set, the value of the E(P2PVPS_MARKETPLACE_URL) environment variable is used.
        One of them is required.
    type: str
  validate_certs:
    description:
      - Whether to verify the marketplace's TLS certificate, against the host's trusted CA
        certificates. The environment variable E(SSL_CERT_FILE) (or E(REQUESTS_CA_BUNDLE)) names
        another bundle, for example a private CA's.
      - Only set to V(false) for a test marketplace with a self-signed certificate.
    type: bool
    default: true
  timeout:
    description:
      - Overall deadline of each API call in seconds, covering connecting, all retries and the
        waits between them, and reading the whole answer. A server that answers very slowly
        cannot hold the task longer than this.
      - Connection errors and HTTP 502, 503 and 504 are retried with exponential backoff
        (C(Retry-After) is honoured up to 10 seconds) while the deadline allows. A call that only
        reads or sets a state is also retried when the server closes or resets the connection
        before answering (a kept-alive connection the server has just timed out); a call that
        creates something is not, since the server may have done it.
    type: int
    default: 30
notes:
  - The client needs only Python's standard library. It keeps one connection open for the calls
    of a task.
  - The proxy of the environment is used as C(requests) would (E(https_proxy), E(http_proxy),
    E(all_proxy), either case; E(no_proxy) lists hosts reached directly). It must be an
    C(http://) proxy; https goes through it with CONNECT.
  - Redirects are never followed, so the token is never sent elsewhere; point O(marketplace_url)
    at the final URL.
  - Answers larger than 1 MiB, compressed answers and answers that are not JSON objects are refused.
"""

    # The web gateway's token instead of a device's, and the reading of the gateway's lists
    # (module_utils/_api.py, MARKETPLACE_GATEWAY_ARGS); modules that use it also use CONNECTION.
    GATEWAY = r"""
options:
  gateway_token:
    description:
      - The marketplace's gateway token (it may read the web routes and the device tunnel keys, nothing else).
      - If not set, the value of the E(P2PVPS_GATEWAY_TOKEN) environment variable is used.
      - Prefer O(gateway_token_file); O(gateway_token_file) wins when both are set.
      - The token is never logged, and never part of an error message or of the diff.
    type: str
  gateway_token_file:
    description:
      - Path of a file on the managed host holding the gateway token (surrounding white space
        is ignored). The file must exist; it should be mode C(0600), a warning says when
        every user can read it.
      - Takes precedence over O(gateway_token).
    type: path
  web_port_min:
    description: Lowest web port a device may have (the marketplace's C(--web-port-range)).
    type: int
    default: 30000
  web_port_max:
    description: Highest web port a device may have.
    type: int
    default: 30999
  page_size:
    description: Entries asked for per API call (1 to 1000).
    type: int
    default: 500
  fail_on_api_error:
    description:
      - Fail the task when the list cannot be read from the marketplace.
      - Either way nothing on the host is changed on an API error, and the error is in RV(api_error).
    type: bool
    default: false
"""

    # Descriptions of the standard attributes (modules state support and details).
    ATTRIBUTES = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
      - This assumes that the system controlled/queried by the module has not changed in a relevant way.
"""

    # Membership of the p2pvps.fleet.marketplace action group (meta/runtime.yml).
    ACTIONGROUP = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/p2pvps.fleet.marketplace) in O(ignore:module_defaults) to set defaults for this module.
    support: full
    membership:
      - p2pvps.fleet.marketplace
"""
