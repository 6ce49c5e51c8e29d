# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this doc fragment is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

from __future__ import annotations


class ModuleDocFragment(object):

    # The device's Docker Engine and state directory (module_utils/_docker.py DOCKER_HOST_ARGS and
    # module_utils/_state.py STATE_DIR_ARGS), the same for every module that runs on a device.
    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - The device's Docker Engine, where the renter containers run.
      - On a C(unix://) socket the modules read the Engine (and remove containers and volumes) with their
        own small client, and import the Docker SDK for Python only to create, start or update a
        container, so a run that changes nothing costs the device less. Other Engines (C(tcp://),
        C(ssh://)) are always asked through the Docker SDK.
    type: str
    default: unix:///var/run/docker.sock
  state_dir:
    description:
      - Directory of the device's local lease state (C(lease.json)), of the marketplace's time at the
        last good check-in (C(clock.json)), of the lease etag of the last check-in answer converged to
        (C(checkin.json)) and of the per-lease disk images (C(<state_dir>/disks)).
      - Every module that runs on the device must be given the same directory.
    type: path
    default: /var/lib/p2pvps
"""
