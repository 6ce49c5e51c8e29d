# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: marketplace
short_description: Devices of a P2P VPS marketplace as an inventory
version_added: 0.1.0
description:
  - Lists the devices known to a P2P VPS marketplace (the C(/api/v1/devices) endpoint),
    one API call per page of devices, never one call per device.
  - Every device becomes a host with its marketplace data in host variables; all strings
    that come from the API are marked unsafe, so a device named C({{ 7*7 }}) stays a name.
  - Groups can be built with O(keyed_groups), O(groups) and O(compose), for example by
    architecture, by rented or free, by online or offline.
  - The configuration file must end in C(marketplace.yml) or C(marketplace.yaml).
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: Marks this file as a configuration of this plugin.
    type: str
    required: true
    choices: [p2pvps.fleet.marketplace]
  url:
    description: Base URL of the marketplace API, for example V(https://market.example.org).
    type: str
    required: true
    env:
      - name: P2PVPS_MARKETPLACE_URL
  token:
    description:
      - Operator token of the marketplace. Prefer O(token_file) or the environment variable;
        the token is never printed.
    type: str
    env:
      - name: P2PVPS_OPERATOR_TOKEN
  token_file:
    description:
      - File holding the operator token (used when O(token) is not set; surrounding white space is
        ignored). It should be mode C(0600); a warning says when every user can read it.
    type: path
    env:
      - name: P2PVPS_OPERATOR_TOKEN_FILE
  validate_certs:
    description: Verify the server's TLS certificate.
    type: bool
    default: true
  timeout:
    description: Overall deadline in seconds for each API call (connect and whole answer).
    type: float
    default: 30
  page_size:
    description: Devices asked for per API call.
    type: int
    default: 200
  status:
    description: Only devices in this state (filtered by the server).
    type: str
    choices: [new, online, offline]
  owner:
    description: Only devices of this owner (filtered by the server).
    type: str
  architecture:
    description: Only devices of this CPU architecture, as reported in their facts (filtered by the server).
    type: str
  query:
    description:
      - A JMESPath expression evaluated on each device's data; only devices for which it is
        true (not empty, not false, not null) are kept. Evaluated on the control node.
      - 'Example: V(facts.memory_mb > `1024`).'
    type: str
  hostname:
    description: Which device field names the host.
    type: str
    default: name
    choices: [name, id]
  host_vars_prefix:
    description: Prefix of the host variables set from the device data.
    type: str
    default: p2pvps_
  builtin_groups:
    description:
      - Put every device in the groups C(p2pvps_devices) (all devices, the group the collection's
        playbooks use), C(p2pvps_status_<new|online|offline>), C(p2pvps_arch_<architecture>)
        (devices that reported their facts) and C(p2pvps_rented) or C(p2pvps_free).
      - These groups are made in Python, without templating, which matters for big fleets (a
        O(keyed_groups) entry costs about a millisecond per host to template); O(groups) and
        O(keyed_groups) still work alongside.
    type: bool
    default: true
requirements:
  - jmespath (only when O(query) is used)
"""

EXAMPLES = r"""
# inventory/fleet.marketplace.yml - the built-in groups (p2pvps_devices, p2pvps_status_online,
# p2pvps_arch_arm64, p2pvps_rented, p2pvps_free...) need no configuration.
plugin: p2pvps.fleet.marketplace
url: https://market.example.org
token_file: ~/.config/p2pvps/operator_token
status: online
groups:
  big_memory: p2pvps_device.facts.memory_mb | default(0) > 2048
keyed_groups:
  - key: p2pvps_owner
    prefix: owner
compose:
  ansible_host: p2pvps_device.name ~ '.pis.example.org'
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/p2pvps-inventory
cache_timeout: 300
"""

import json
import os

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.p2pvps.fleet.plugins.module_utils._api import (
    MarketplaceClient,
    MarketplaceError,
    read_token_file,
)

try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:
    HAS_JMESPATH = False

# ansible-core 2.19 and later (data tagging, which added trusted_by_default) template only strings
# marked trusted, and parsing JSON marks none; earlier versions template every str not wrapped.
API_STRINGS_NEED_WRAPPING = not hasattr(BaseInventoryPlugin, "trusted_by_default")


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "p2pvps.fleet.marketplace"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("marketplace.yml", "marketplace.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        # Its own key: earlier versions cached the device list under get_cache_key's, and they would
        # misread this entry after a downgrade.
        cache_key = self.get_cache_key(path) + "_json"
        devices = self._cached_devices(cache_key) if cache and self.get_option("cache") else None
        if devices is None:
            devices = self._fetch_devices()
            if self.get_option("cache"):
                self._cache[cache_key] = json.dumps(devices)
        self._populate(self._select(devices))

    def _cached_devices(self, cache_key):
        """The cached listing, or None to fetch it again.

        The cache holds the listing as JSON text, parsed here: whatever the cache plugin gives back
        (ansible-core 2.19 restores trust marks from its cache files), the strings are plain. An entry
        of another shape counts as none.
        """
        try:
            cached = self._cache[cache_key]
        except KeyError:
            return None
        if not isinstance(cached, str):
            return None
        try:
            devices = json.loads(cached)
        except ValueError:
            return None
        return devices if isinstance(devices, list) else None

    def _client(self):
        token = self.get_option("token")
        if not token and self.get_option("token_file"):
            token = self._read_token_file(os.path.expanduser(self.get_option("token_file")))
        if not token:
            raise AnsibleError("no marketplace operator token: set token, token_file or "
                               "P2PVPS_OPERATOR_TOKEN")
        return MarketplaceClient(self.get_option("url"), token,
                                 validate_certs=self.get_option("validate_certs"),
                                 timeout=self.get_option("timeout"))

    def _read_token_file(self, token_file):
        try:
            token, world_readable = read_token_file(token_file, "marketplace token")
        except ValueError as exc:
            raise AnsibleError(str(exc)) from None
        if world_readable:
            self.display.warning("the marketplace token file %s can be read by every user of this host; "
                                 "make it 0600" % token_file)
        return token

    def _fetch_devices(self):
        filters = {name: self.get_option(name) for name in ("status", "owner", "architecture")
                   if self.get_option(name)}
        devices = []
        try:
            for page in self._client().iter_devices(page_size=self.get_option("page_size"),
                                                    **filters):
                devices.extend(page)
        except MarketplaceError as exc:
            raise AnsibleError("marketplace inventory: %s" % to_native(exc)) from None
        return devices

    def _select(self, devices):
        query = self.get_option("query")
        if not query:
            return devices
        if not HAS_JMESPATH:
            raise AnsibleError("the query option needs the jmespath Python library")
        try:
            expression = jmespath.compile(query)
        except jmespath.exceptions.JMESPathError as exc:
            raise AnsibleError("invalid query %r: %s" % (query, to_native(exc))) from None
        return [device for device in devices if expression.search(device)]

    def _populate(self, devices):
        # Per-host work is what bounds a big fleet: options are read once, each built-in group is
        # made once, the device's values are neither copied nor wrapped (see _set_host_variables),
        # and the host's combined variables (a copy of all of them) are only built when compose,
        # groups or keyed_groups need them.
        prefix = self.get_option("host_vars_prefix")
        strict = self.get_option("strict")
        hostname = self.get_option("hostname")
        builtin_groups = self.get_option("builtin_groups")
        compose = self.get_option("compose")
        groups = self.get_option("groups")
        keyed_groups = self.get_option("keyed_groups")
        constructed = bool(compose or groups or keyed_groups)
        group_names = {}
        for device in devices:
            if API_STRINGS_NEED_WRAPPING:
                device = wrap_var(device)
            host = self.inventory.add_host(str(device[hostname]))
            host_vars = self._host_vars(device)
            self._set_host_variables(host, prefix, host_vars)
            if builtin_groups:
                for group in self._builtin_group_names(host_vars):
                    name = group_names.get(group)
                    if name is None:
                        name = group_names[group] = self.inventory.add_group(self._sanitize_group_name(group))
                    self.inventory.add_child(name, host)
            if constructed:
                combined = self.inventory.get_host(host).get_vars()
                self._set_composite_vars(compose, combined, host, strict=strict)
                self._add_host_to_composed_groups(groups, combined, host, strict=strict)
                self._add_host_to_keyed_groups(keyed_groups, combined, host, strict=strict)

    def _set_host_variables(self, host, prefix, host_vars):
        # Onto the Host itself. The inventory's own set_variable (ansible-core 2.19) copies every value
        # and tags each copy with its origin, to isolate what a plugin hands over and to apply trust
        # for plugins that cannot: with the wrapping, most of the parse of a big fleet
        # (benchmarks/results-notes.md). These values are JSON (types every version accepts), made
        # by this parse, and their strings are untrusted already (plain on 2.19, wrapped before).
        set_variable = self.inventory.get_host(host).set_variable
        for name, value in host_vars.items():
            set_variable(prefix + name, value)

    @staticmethod
    def _builtin_group_names(host_vars):
        groups = ["p2pvps_devices", "p2pvps_rented" if host_vars["rented"] else "p2pvps_free"]
        if host_vars["status"]:
            groups.append("p2pvps_status_" + str(host_vars["status"]))
        if host_vars["architecture"]:
            groups.append("p2pvps_arch_" + str(host_vars["architecture"]))
        return groups

    @staticmethod
    def _host_vars(device):
        facts = device.get("facts") or {}
        tunnel = device.get("tunnel") or {}
        lease = device.get("lease")
        return {
            "device": device,
            "device_id": device.get("id"),
            "status": device.get("status"),
            "online": device.get("status") == "online",
            "rented": lease is not None,
            "lease": lease,
            "architecture": facts.get("architecture"),
            "owner": device.get("owner"),
            "tunnel_remote_port": tunnel.get("remote_port"),
        }
