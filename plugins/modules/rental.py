#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: rental
short_description: Converge a device's renter container to its marketplace lease
version_added: 0.1.0
description:
  - Checks in once with the P2P VPS marketplace (the heartbeat, also in check mode, as the
    check-in is the read), validates the lease it answers, and converges the renter
    container on the local Docker Engine to it.
  - No lease means no renter container and no lease volume. A lease means exactly one
    container labelled with the lease id, from the lease's image (a local image; nothing
    is pulled or built), running sshd for the renter's user with their keys (no passwords),
    published on C(127.0.0.1:local_port) only, with the lease's memory, CPU and process
    limits, C(no-new-privileges), all capabilities dropped except what sshd needs, no host
    network and no Docker socket. Docker never restarts it by itself (after a reboot the next run
    mounts the lease disk, then starts the same container).
  - A new lease id removes the old container and its volumes and creates the new one.
    New keys are written into the running container without recreating it, and when a key was
    removed every SSH session of the lease is ended in the same run (see the notes); new memory,
    CPU and process limits are applied in place; a new image, user name, local port, web
    address or sandbox setting recreates the container and keeps the renter's home (a new
    image also gets fresh copies of the system directories).
  - The sandbox. The container's root file system is read-only. Everything the renter can
    write lives on the lease's disk - the home (C(/home/<user>)) and copies of the image's
    C(/etc), C(/usr), C(/var), C(/opt), C(/srv) and C(/root), made by Docker when the
    container is created, so a renter can install packages. C(/tmp), C(/var/tmp) and C(/run)
    are size-capped tmpfs (they count against the memory limit). Where the module runs as
    root and the host has loop devices and C(mkfs.ext4), the lease disk is an ext4 file
    system of the lease's C(disk_gb) in an image file under O(state_dir) allocated in full
    (never sparse), so the whole container is capped at C(disk_gb); otherwise the volumes
    have no size limit, a warning says so, and RV(disk_limit_enforced) and RV(sandbox)
    report it.
  - A lease whose disk does not fit the device's free space minus O(disk_reserve_mb) is
    refused (the task fails, nothing of that lease is created, other leases are still
    removed); memory above the device's memory minus O(memory_reserve_mb) and more CPUs
    than the device has are cut to what it has, with a warning.
  - Renter containers run on their own Docker network (C(p2pvps-renter), Linux bridge
    O(renter_bridge)) with traffic between its containers off and IPv6 off, with a high
    C(oom_score_adj) (under memory pressure the kernel kills the renter's processes first,
    not the tunnel or this agent), a write budget on the lease disk (O(write_bps),
    O(write_iops)) and a bandwidth cap each way (O(bandwidth_mbit)). Before it creates a
    container the module checks that the host's isolation rules (role
    C(p2pvps.fleet.docker)) are in place (O(require_isolation)).
  - Root inside, nobody outside. Where Docker remaps user namespaces (C(userns-remap), set by
    the C(p2pvps.fleet.docker) role), the renter may also log in as root with the same keys,
    that root is an unprivileged user on the device. Elsewhere the renter has no root.
  - Durable and fail-safe. The last lease is kept in C(lease.json) in O(state_dir) (written
    atomically, mode 0600) and in container labels. When the marketplace is unreachable,
    times out or answers anything that does not validate, nothing is wiped - a lease whose
    C(expires_at) has passed (see the clock below) is frozen, then wiped after O(grace_s) (see
    freeze, then wipe below); a live lease keeps running (it is started
    or even recreated from the local state if needed) and the error is reported in
    RV(api_error) and as a warning, failing only with O(fail_on_api_error=true).
  - Leases end by the marketplace's clock, never the device's (a Raspberry Pi has no real-time clock).
    When the marketplace answers, its C(server_time) is the time, and a lease it answers that has
    already expired by it is treated as no lease. While it does not answer, the time is the
    marketplace's time at the last good check-in plus the time elapsed since then by the kernel's
    boot clock, which clock jumps (fake-hwclock, bad NTP) do not move; after a reboot, the device's
    clock corrected by the offset seen at the last check-in (never earlier than that check-in).
    This is remembered in C(clock.json) in O(state_dir), written only when it changes. See RV(clock).
  - Freeze, then wipe. A lease that ends by the device's own judgement alone (the marketplace cannot be
    reached and its C(expires_at) has passed by the clock above) is frozen, not wiped - its container is
    stopped, the container and the lease's volumes and disk are kept, and C(lease.json) remembers since
    when (RV(frozen)). It is wiped once it has been frozen for O(grace_s). When the marketplace answers
    again it decides at once - the same lease with a later C(expires_at) (the renter extended it)
    starts the same container with its data; no lease or another lease wipes it. A lease the
    marketplace ends (its answer) is wiped at once, as ever.
  - Signed wipe receipts. Right after it removed a lease's volumes (whatever ended the lease), the
    module signs a receipt of the wipe - lease id, device id, the container ids, volume names and
    disk image removed, the bytes removed, the time by the marketplace's clock as the device knows
    it, the reason - as canonical JSON (sorted keys, no spaces) with C(ssh-keygen -Y sign) in the
    namespace C(p2pvps-wipe-receipt), and keeps it in C(receipts/<lease id>.json) in O(state_dir)
    (atomic, mode 0600; it survives reboots). Every check-in reports the kept receipts and the
    device's receipt public key until the marketplace acknowledges them; a run that wiped while the
    marketplace answered reports the new receipt at once in one more check-in. The key is
    C(receipt_ed25519) in O(state_dir) (ed25519, mode 0600, made on the first run, never printed).
    Anyone can verify a receipt offline with C(ssh-keygen -Y verify) (the collection's README,
    "Proving a wipe"). See RV(receipts).
  - Long-poll (O(wait_s)). The marketplace holds the check-in until the device's lease differs from the
    one the device converged to last (a rental created, changed or ended, the lease expired) or O(wait_s)
    passes, so a device learns of a new or ended rental within seconds. The device knows that lease by
    the C(lease_etag) of its check-in answer, kept in C(checkin.json) in O(state_dir) after a successful
    converge (written atomically and only when it changes; never in check mode). The check-in is held
    without the state lock, so a push-mode converge meanwhile is not kept waiting.
  - The lease's SSH host key. The module makes it on the device (C(ssh-keygen -t ed25519) in a private
    temporary directory of O(state_dir), removed at once), writes it into the new container's
    C(/etc/ssh) before its first start (the renter image's init keeps a key it finds) and keeps only its
    public line, in C(lease.json). Every check-in reports it for that lease as C(host_public_key), and a
    run that made one reports it at once in one more check-in, so the marketplace can show the renter its
    fingerprint to check at the first login. The private key is never printed, logged or kept on the
    device. A container made again for the same lease keeps the key its C(/etc) holds when it is the one
    remembered, else gets a new one. See RV(host_key).
  - The login message. What the renter sees when they log in over SSH - the lease's limits, its expiry
    (UTC), its web address, the host key's fingerprint - is written by the module from the lease into
    C(login/<lease id>/motd) in O(state_dir) (a root-owned directory, printable ASCII only, so marketplace
    strings cannot bring terminal escape sequences), which the container mounts read-only at
    C(/etc/p2pvps-lease) (the renter image's C(/etc/motd) points there). It is rewritten when the lease
    changes (an extension, new limits) and seen at the next login, without recreating or restarting the
    container; it is removed with the lease's volumes. See RV(login_message).
  - Upgrading from a version without host keys and login directories. A renter container made by such
    a version is kept as it is (never recreated for this, no data lost, not restarted) - its renter sees
    the message its image's init wrote at the start (limits and web address, no expiry) and the host key
    the init made inside the container, which is not reported to the marketplace (it shows none for that
    rental). The lease's next container (the next lease, or a recreation) gets both.
author:
  - p2pvps.fleet developers (@p2pvps)
extends_documentation_fragment:
  - p2pvps.fleet._marketplace
  - p2pvps.fleet._marketplace.connection
  - p2pvps.fleet._marketplace.attributes
  - p2pvps.fleet._marketplace.actiongroup
  - p2pvps.fleet._device
attributes:
  check_mode:
    support: full
    details:
      - The check-in with the marketplace happens in check mode too; it is the read that
        tells which lease the device should run.
  diff_mode:
    support: full
    details:
      - The diff shows the remembered lease (keys by fingerprint) and the renter containers
        before and after.
  idempotent:
    support: full
    details:
      - Holds while the marketplace's answer stays the same (a renewed lease changes the state file).
options:
  state:
    description:
      - V(present) converges the renter container to the marketplace's lease.
      - V(absent) removes every renter container and lease volume of this device and forgets the
        lease (for decommissioning). It still checks in once, to learn whether the marketplace
        holds a live lease; a live lease (the marketplace's or, while the marketplace cannot be
        reached, the remembered one before its C(expires_at)) is not cut unless O(force=true),
        and the task fails instead.
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - With O(state=absent), remove a live lease too. The renter loses their container and data.
    type: bool
    default: false
  local_port:
    description:
      - Port on C(127.0.0.1) of the device where the renter's sshd is published; the tunnel
        forwards the marketplace's remote port to it.
    type: int
    default: 2222
  web_local_port:
    description:
      - Port on C(127.0.0.1) of the device where the renter container's web port (C(8080)
        inside) is published; the tunnel forwards the device's web port on the tunnel server
        to it. V(0) publishes no web port.
    type: int
    default: 2280
  allowed_images:
    description:
      - The renter images this device runs. A lease with any other image is refused, even when
        that image is present on the device.
      - Each entry is an image name as the lease gives it (V(p2pvps/renter:1.2)), an image id
        (V(sha256:...), the local image's id) or a repository digest (V(name@sha256:...));
        ids and digests are the safer choice, a name can be re-tagged.
      - Empty allows every image present on the device.
    type: list
    elements: str
    default: []
  require_isolation:
    description:
      - Check before creating a renter container that the host's isolation rules (written by
        the C(p2pvps.fleet.docker) role) are in place, and refuse the lease when they are not.
    type: bool
    default: true
  isolation_script:
    description: The script of the C(p2pvps.fleet.docker) role whose C(check) verifies the rules.
    type: path
    default: /usr/local/sbin/p2pvps-docker-isolation
  renter_bridge:
    description:
      - Name of the Linux bridge of the renter network C(p2pvps-renter), created by the module
        when missing. The docker role's isolation rules use the same name (C(docker_renter_bridge)).
    type: str
    default: p2pvps0
  memory_reserve_mb:
    description: Memory the device keeps for itself; a lease gets at most the rest.
    type: int
    default: 256
  disk_reserve_mb:
    description:
      - Free space the device keeps for Docker, the journal and the agent; a lease disk that
        would leave less is refused.
    type: int
    default: 1024
  bandwidth_mbit:
    description:
      - Bandwidth cap of the renter container in each direction, in Mbit/s (C(tc) token bucket
        on both ends of its network link). V(0) disables it.
      - Applied after every start of the container (the module records what it shaped, so a
        run without a restart costs nothing); after a reboot the next run applies it again.
    type: int
    default: 20
  write_bps:
    description:
      - Write budget of the renter container on its lease disk, in bytes per second (Docker's
        C(--device-write-bps) on the disk's loop device). V(0) disables it.
      - On cgroup v2 it also throttles buffered writes; on cgroup v1 only direct and
        synchronous writes are throttled (the kernel does not attribute write-back there).
    type: int
    default: 10485760
  write_iops:
    description: Write operations per second allowed on the lease disk (V(0) disables it).
    type: int
    default: 300
  wait_s:
    description:
      - Long-poll. With V(0) the check-in is answered at once (one check-in per run).
      - With more, the check-in is held by the marketplace up to this many seconds while the device's lease
        is still the one it converged to last (on the first run, with no lease etag kept yet, it is answered
        at once); the call's deadline is O(wait_s) plus O(timeout).
      - A run then lasts at least O(wait_s) unless it converged to a lease that differs from the one the
        device had. A runner that starts the module again as soon as it ends (the C(p2pvps.fleet.rental_agent)
        timer) so checks in at most once per O(wait_s), plus once per lease change, whether the marketplace
        holds check-ins, answers them at once, errs or cannot be reached.
      - A marketplace that holds check-ins for less than O(wait_s) (its own cap) is answered later by this
        run's sleep; set its cap to at least O(wait_s).
      - At most V(600).
    type: int
    default: 0
  grace_s:
    description:
      - How long, in seconds, a lease the device ended by its own judgement (marketplace unreachable,
        C(expires_at) passed) stays frozen - container stopped, data kept - before it is wiped. An
        extension the marketplace answers within that time resumes the same container with its data.
      - V(0) wipes such a lease at once. A lease the marketplace ends is always wiped at once.
    type: int
    default: 86400
  fail_on_api_error:
    description:
      - Fail the task when the check-in fails or its answer is rejected.
      - Either way nothing live is wiped on an API error, and the error is in RV(api_error).
    type: bool
    default: false
  require_disk_limit:
    description:
      - Fail instead of creating a lease volume without a size limit when this host cannot
        enforce the lease's C(disk_gb).
      - When not set, a disk limit is required wherever this host can enforce one (root, loop
        devices, C(mkfs.ext4)); elsewhere the lease runs without one, loudly (warning, RV(sandbox)).
    type: bool
requirements:
  - Docker SDK for Python (C(docker)) 5.0 or newer; 7.1 or newer when C(requests) is 2.32 or newer
  - C(ssh-keygen) (OpenSSH client) on the device for the wipe receipts and the leases' host keys; without it leases are
    still wiped, with a warning that no receipt was signed
  - Root for the enforced per-lease disk (loop devices, C(mkfs.ext4), C(mount)), the bandwidth cap
    (C(tc), C(nsenter)) and ending SSH sessions (signals to the container's processes)
notes:
  - Renter containers carry the labels C(p2pvps.role=renter), C(p2pvps.lease), C(p2pvps.user),
    C(p2pvps.keys) and C(p2pvps.expires_at); containers and volumes without them are never touched.
  - After a reboot a lease with an enforced disk cannot start until the module has mounted its
    file system again; the next run (for example the rental_agent timer) does that and starts
    the same container.
  - Shrinking C(disk_gb) of a running lease is not applied (the renter's data is kept). Growing
    is applied online where the kernel lets the module resize a mounted ext4 file system
    (C(CAP_SYS_RESOURCE)); otherwise the container is stopped for the resize and started again
    (same container).
  - The module writes the renter's C(authorized_keys) (root-owned; a renter who is root in their
    container can change it, which only affects their own lease). It trusts the keys recorded in
    C(lease.json) for the container of that lease and reads the file from the container only when
    there is no such record (first run, lost O(state_dir), a container of another lease); a key
    file changed by hand inside a container is therefore not noticed while the state file says
    otherwise.
  - Revocation. When a lease's new keys drop a key the device remembers (C(lease.json)), or the
    previous keys are not known, the module ends every SSH session of the lease right after writing
    the keys (action C(end_sessions)); a removed key loses its sessions within one run. This is done
    from the host as root, never inside the container, where the renter is root and could replace
    any program. Each SSH connection is a child of the container's first process (its sshd) running
    sshd; it is killed (SIGKILL) with all its descendants. Sessions of the remaining keys end too, as
    nothing the device can trust tells which key opened a session; their holders log in again.
    Processes a session detached (C(nohup) or C(setsid) daemons, C(tmux) and C(screen) servers) are
    children of the first process, like the renter's own services, and keep running; a key that may
    have been abused calls for ending the lease, not only for removing the key.
  - Push mode (the C(p2pvps.fleet.converge) playbook) and pull mode (the C(p2pvps.fleet.rental_agent)
    timer) must run the module with the same sandbox options, or each run would recreate the
    container the other made; both read the same C(rental_agent_*) variables.
  - The write budget follows the lease disk's loop device through C(<state_dir>/disks/<lease>.dev),
    which the module updates when it mounts the disk; Docker resolves it at every container start.
seealso:
  - module: p2pvps.fleet.device_register
"""

EXAMPLES = r"""
- name: Converge the renter container to the marketplace's lease
  p2pvps.fleet.rental:
    marketplace_url: https://market.example.org
    device_id: "{{ p2pvps_device_id }}"
    device_token_file: /etc/p2pvps/device_token
  register: rental

- name: Show what happened
  ansible.builtin.debug:
    msg: "lease {{ rental.lease_id }} in {{ rental.container_id }}: {{ rental.actions | map(attribute='action') }}"

- name: Be strict in CI - fail when the marketplace cannot be reached
  p2pvps.fleet.rental:
    marketplace_url: http://127.0.0.1:8080
    device_id: "{{ p2pvps_device_id }}"
    device_token_file: /etc/p2pvps/device_token
    fail_on_api_error: true
    require_disk_limit: true
    local_port: 2222

- name: Only the operator's renter image, by id; a tighter sandbox
  p2pvps.fleet.rental:
    marketplace_url: https://market.example.org
    device_id: "{{ p2pvps_device_id }}"
    device_token_file: /etc/p2pvps/device_token
    allowed_images:
      - sha256:4f8b6a3c1d2e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4
    bandwidth_mbit: 10
    write_bps: 5242880
    memory_reserve_mb: 384

- name: Wait up to 120 s for the marketplace to change this device's lease, then converge
  p2pvps.fleet.rental:
    marketplace_url: https://market.example.org
    device_id: "{{ p2pvps_device_id }}"
    device_token_file: /etc/p2pvps/device_token
    wait_s: 120
  register: rental

- name: Decommission - remove the renter container and volumes (fails while a lease is live)
  p2pvps.fleet.rental:
    marketplace_url: https://market.example.org
    device_id: "{{ p2pvps_device_id }}"
    device_token_file: /etc/p2pvps/device_token
    state: absent
"""

RETURN = r"""
msg:
  description: One line for the operator - the lease after this run, the actions taken (or that
    would be taken in check mode) and the API error if there was one.
  returned: success
  type: str
  sample: lease 5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60, actions create, write_state
lease_id:
  description: Id of the lease the device runs after this run, or V(null) without a lease.
  returned: always
  type: str
  sample: 5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60
container_id:
  description: Id of the renter container after this run (V(null) without a lease, or in check
    mode when the container would be created).
  returned: always
  type: str
  sample: 3b1f0c9e5d7a...
lease:
  description: The lease after this run; keys only by fingerprint.
  returned: always
  type: dict
  sample:
    id: 5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60
    username: alice
    ssh_key_fingerprints: ["SHA256:2f3c..."]
    image: p2pvps/renter:latest
    expires_at: "2026-11-25T14:00:00Z"
    limits: {memory_mb: 512, cpus: 1.0, pids: 256, disk_gb: 4}
    web: {hostname: alice-k3j9xq.web.example.org, url: "https://alice-k3j9xq.web.example.org/"}
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description: >-
        One of V(mount_disk), V(remove_container), V(remove_volume), V(reset_system), V(create),
        V(start), V(stop) (a lease frozen), V(update_keys), V(end_sessions), V(update_limits), V(resize_disk), V(write_state),
        V(limit_bandwidth), V(write_login_message) (the login message of a kept container changed, see RV(login_message)).
      type: str
    lease_id:
      description: The lease concerned.
      type: str
    container:
      description: Name of the container concerned.
      type: str
    reason:
      description:
        - Why. For V(end_sessions), once done, how many SSH sessions ended and why
          (V(ended 2 SSH sessions (a key was removed\))).
      type: str
  sample:
    - {action: create, lease_id: 5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60,
       container: p2pvps-renter-5f2d6c1e8d4b, reason: new lease}
api_error:
  description: Why the check-in failed or its answer was rejected; V(null) when it worked.
  returned: always
  type: str
  sample: "marketplace unreachable: connection refused"
disk_limit_enforced:
  description:
    - Whether the lease's C(disk_gb) is enforced on its volume; V(null) without a lease.
    - In check mode, for a volume still to be created, whether it would be.
  returned: always
  type: bool
  sample: true
disk_limit_reason:
  description: How the disk limit is enforced, or why it is not.
  returned: always
  type: str
  sample: the lease volume is a 4 GiB ext4 file system in a loop-mounted image
refused:
  description: Why the lease could not be created on this device (image not allowed or missing,
    isolation rules missing, disk does not fit); V(null) otherwise. The task fails when set.
  returned: always
  type: str
  sample: lease 5f2d... needs a 64 GB disk; this device has 11.2 GB free in /var/lib/p2pvps/disks ...
sandbox:
  description: What the renter container enforces, read from the container itself; V(null) without one.
  returned: always
  type: dict
  contains:
    disk:
      description: V(whole) (read-only root, size-capped tmpfs, every volume on the lease disk),
        V(home) (only the home, older containers) or V(none).
      type: str
    read_only_root:
      description: Whether the root file system is read-only.
      type: bool
    ipv6:
      description: V(off) when IPv6 is disabled in the container's network namespace.
      type: str
    network:
      description: The container's Docker network.
      type: str
    user_namespace:
      description: V(on) when the renter's root is remapped to an unprivileged user of the device.
      type: str
    oom_score_adj:
      description: The container's OOM score adjustment.
      type: int
    write_budget_bps:
      description: Write budget on the lease disk in bytes per second (V(null) none).
      type: int
    write_budget_iops:
      description: Write operations per second on the lease disk (V(null) none).
      type: int
    bandwidth_mbit:
      description: The bandwidth cap each way (V(null) none).
      type: int
    isolation_rules:
      description: V(checked) when the host's isolation rules were verified before creating.
      type: str
  sample: {disk: whole, read_only_root: true, ipv6: "off", network: p2pvps-renter, user_namespace: "on",
           oom_score_adj: 1000, write_budget_bps: 10485760, write_budget_iops: 300, bandwidth_mbit: 20,
           isolation_rules: checked}
checkin_interval_s:
  description: Check-in interval the marketplace asked for (V(null) on API error).
  returned: always
  type: int
  sample: 120
clock:
  description: The time this run judged leases by.
  returned: always
  type: dict
  contains:
    source:
      description: V(marketplace) (the answer's C(server_time)), V(time since the last check-in),
        V(device clock corrected by the last check-in) (after a reboot) or V(device clock) (a
        marketplace that sends no C(server_time), or none remembered).
      type: str
    marketplace_time:
      description: That time (UTC).
      type: str
    device_ahead_s:
      description: How many seconds the device's clock is ahead of it (negative when behind).
      type: int
  sample: {source: marketplace, marketplace_time: '2026-12-01T20:00:00Z', device_ahead_s: 0}
frozen:
  description:
    - Set while the lease is frozen - it ended by the device's own judgement while the marketplace could
      not be reached; its container is stopped and its data kept until RV(frozen.wipe_at)
      (O(grace_s) after RV(frozen.since)) unless the marketplace answers it extended. V(null) otherwise.
  returned: always
  type: dict
  contains:
    since:
      description: When it was frozen (the marketplace's clock as the device estimated it, UTC).
      type: str
    wipe_at:
      description: When it is wiped if the marketplace has not answered by then (same clock).
      type: str
  sample: {since: '2026-12-01T20:00:00Z', wipe_at: '2026-12-02T20:00:00Z'}
receipts:
  description: Signed wipe receipts in this run.
  returned: always
  type: dict
  contains:
    signed:
      description: Lease ids whose wipe this run signed a receipt for.
      type: list
      elements: str
    acknowledged:
      description: Lease ids whose receipts the marketplace acknowledged in this run (they are deleted
        from the device).
      type: list
      elements: str
    pending:
      description: How many receipts the device keeps for the next check-ins.
      type: int
  sample: {signed: [5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60], acknowledged: [5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60],
           pending: 0}
long_poll:
  description: The long-poll check-in of this run.
  returned: when O(wait_s) is more than 0
  type: dict
  contains:
    wait_s:
      description: O(wait_s).
      type: int
    held_s:
      description: How long the check-in took (held by the marketplace), in seconds.
      type: float
    lease_changed:
      description: Whether this run converged to a lease that differs from the one the device had (the run
        then ends at once).
      type: bool
    paced_s:
      description: How long the run slept after the converge so that it lasted O(wait_s).
      type: float
  sample: {wait_s: 120, held_s: 37.4, lease_changed: true, paced_s: 0.0}
phases:
  description:
    - Where the run's time went, for the benchmarks (C(benchmarks/results.md)). Each item is a phase in
      order with its C(wall_ms), C(cpu_ms) (of this process) and C(docker_calls) (each Engine call and its
      C(wall_ms)); the first item is the time before the module's code ran (interpreter, Ansible's wrapper,
      imports). C(sdk_imported) tells whether the run imported the Docker SDK (only changes need it).
  returned: only when the environment variable C(P2PVPS_RENTAL_PHASES) is C(1) on the device
  type: dict
  sample: {sdk_imported: false, items: [{phase: 'docker: lease volumes', wall_ms: 1.9, cpu_ms: 0.6,
           docker_calls: [{call: GET /volumes, wall_ms: 1.7}]}]}
diff:
  description: Before and after (the remembered lease and the renter containers; the login message
    when it changes for a container that is kept).
  returned: when diff mode is on
  type: dict
host_key:
  description: The SSH host key this module made for the lease's container (the public half only), as
    the check-ins report it; null when there is no lease or its container was made by a version that did
    not make host keys (or, in check mode, before the container is created).
  returned: always
  type: dict
  contains:
    public_key:
      description: The public key line, C(ssh-ed25519 BASE64).
      type: str
    fingerprint:
      description: Its SHA256 fingerprint, as C(ssh-keygen -lf) and the renter's C(ssh) print it.
      type: str
  sample: {public_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOf...', fingerprint: 'SHA256:9hZc1m...'}
login_message:
  description: The lease's login message - C(written) (this run wrote it, or would in check mode;
    a new container gets it before its first start), C(unchanged), C(not mounted) (the container was
    made by a version without login directories; nothing is written for it) - or null without a lease
    or container.
  returned: always
  type: str
  sample: written
"""

import contextlib
import datetime
import os
import re
import sys
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.p2pvps.fleet.plugins.module_utils import (
    _clock, _docker, _facts, _lease, _receipts, _rental, _renter_login, _sandbox,
)
from ansible_collections.p2pvps.fleet.plugins.module_utils._api import (
    DEVICE_REQUIRED,
    MARKETPLACE_COMMON_ARGS,
    MarketplaceError,
    client_from_module,
    missing_connection_option,
)
from ansible_collections.p2pvps.fleet.plugins.module_utils._docker import (
    DOCKER_HOST_ARGS,
    DockerException,
    LeaseDisk,
    RentalDockerError,
    RenterDocker,
    Sandbox,
    SdkMissing,
)
from ansible_collections.p2pvps.fleet.plugins.module_utils._state import (
    CHECKIN_FILE,
    CLOCK_FILE,
    STATE_DIR_ARGS,
    STATE_FILE,
    StateLock,
    StateLockTimeout,
    read_anchor,
    read_host_key,
    read_lease_etag,
    read_local_state,
    read_state,
    write_anchor,
    write_lease_etag,
    write_state,
)

# What a refused lease may still do: end what is not that lease, mount lease disks after a reboot.
DONE_WHEN_REFUSED = ('remove_container', 'remove_volume', 'mount_disk')
_UNKNOWN = object()
MIB = 1024 ** 2
#: Longest long-poll (O(wait_s)), the contract's limit of ?wait=.
MAX_WAIT_S = 600


class Phases(object):
    """Wall and CPU milliseconds of each phase of a run, with its Docker Engine calls: recorded only when the
    environment variable P2PVPS_RENTAL_PHASES is 1 (for the benchmarks), returned as RV(phases)."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.items = []
        if enabled:
            _docker.CALL_LOG = []
            self.wall, self.cpu = time.perf_counter(), time.process_time()
            # what came before main(): the interpreter, Ansible's module wrapper, the imports
            self.items.append({'phase': 'start (interpreter, wrapper, imports)',
                               'wall_ms': round(_process_age_s() * 1000, 1), 'cpu_ms': round(self.cpu * 1000, 1),
                               'docker_calls': []})

    def mark(self, name):
        if not self.enabled:
            return
        wall, cpu = time.perf_counter(), time.process_time()
        calls = [{'call': call, 'wall_ms': round(seconds * 1000, 1)} for call, seconds in _docker.CALL_LOG]
        del _docker.CALL_LOG[:]
        self.items.append({'phase': name, 'wall_ms': round((wall - self.wall) * 1000, 1),
                           'cpu_ms': round((cpu - self.cpu) * 1000, 1), 'docker_calls': calls})
        self.wall, self.cpu = wall, cpu

    def report(self):
        return {'items': self.items, 'sdk_imported': 'docker' in sys.modules}


def _process_age_s():
    """Seconds since this process started (/proc), 0.0 where that cannot be read."""
    try:
        with open('/proc/self/stat') as handle:
            started = int(handle.read().rsplit(')', 1)[1].split()[19]) / os.sysconf('SC_CLK_TCK')
        with open('/proc/uptime') as handle:
            return max(0.0, float(handle.read().split()[0]) - started)
    except (OSError, ValueError, IndexError):
        return 0.0


PHASES = Phases(False)


class ConvergeFailed(Exception):
    """The run fails with this message (and the result so far)."""


class HeldCheckin(object):
    """A long-poll check-in made before the converge: the answer (None on an API error, then in `api_error`)
    and the lease etag the device sent, i.e. the one it had converged to."""

    def __init__(self, answer, api_error, sent_etag):
        self.answer = answer
        self.api_error = api_error
        self.sent_etag = sent_etag


class Pace(object):
    """With O(wait_s), a run lasts at least `wait_s` unless it converged to a lease that differs from the one
    the device had: a runner that starts the module again at once (the rental_agent timer) then checks in at
    most once per `wait_s`, plus once per lease change, whatever the marketplace does (down, erroring, not
    holding check-ins)."""

    def __init__(self, wait_s):
        self.until = time.monotonic() + wait_s

    def hold(self):
        """Sleep until the run has lasted `wait_s`; the seconds slept."""
        left = max(0.0, self.until - time.monotonic())
        time.sleep(left)
        return left


class RentalManager:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.state_path = os.path.join(self.params['state_dir'], STATE_FILE)
        self.clock_path = os.path.join(self.params['state_dir'], CLOCK_FILE)
        self.checkin_path = os.path.join(self.params['state_dir'], CHECKIN_FILE)
        self.docker = RenterDocker(self.params['docker_host'], os.path.join(self.params['state_dir'], 'disks'))
        self.sandbox = Sandbox(bridge=self.params['renter_bridge'], write_bps=self.params['write_bps'],
                               write_iops=self.params['write_iops'])
        web_port = self.params['web_local_port']
        self.publish = _rental.Publish(ssh_port=self.params['local_port'], web_port=web_port or None,
                                       spec=self.sandbox.spec())
        self.result = {'changed': False, 'lease_id': None, 'container_id': None, 'lease': None,
                       'actions': [], 'api_error': None, 'disk_limit_enforced': None,
                       'disk_limit_reason': None, 'checkin_interval_s': None, 'refused': None,
                       'sandbox': None, 'clock': None, 'frozen': None,
                       'receipts': {'signed': [], 'acknowledged': [], 'pending': 0},
                       'host_key': None, 'login_message': None}
        self.owner = _UNKNOWN
        # (lease id, public line) of the host key this module made for the lease's container; a new one is
        # reported to the marketplace at once (one more check-in)
        self.host_key = None
        self.new_host_key = False
        self.outbox = _receipts.Outbox(self.params['state_dir'], self.params['device_id'])
        self.wiped = {}      # lease id -> what this run removed of it (for its wipe receipt)
        self.now = None      # the marketplace's time this run judges by
        # The lease etag this run converged to and remembered, when it differs from the one the device had.
        self.new_etag = None

    def observed(self, containers, local_state):
        """What the check-in reports about this device."""
        mine = [c for c in containers if local_state is not None and c.lease_id == local_state.id]
        return {
            'lease_id': None if local_state is None else local_state.id,
            'container': ('running' if mine[0].running else mine[0].status) if mine else 'absent',
            'renter_containers': len(containers),
            # what a lease disk can take here; the marketplace checks new rentals against it
            'disk_free_gb': _facts.disk_free_gb_of(self.docker.disk_dir),
        }

    def ask(self, observed, lease_etag=None, wait_s=0):
        """(check-in answer or None, API error or None)."""
        try:
            return self.send_checkin(observed, lease_etag, wait_s), None
        except MarketplaceError as exc:
            return None, 'check-in failed: %s' % to_native(exc)

    def long_poll(self):
        """The check-in with O(wait_s), without the state lock (the marketplace may hold it that long): answered
        when this device's lease differs from the one it converged to last, or when the wait is over."""
        local_state, dummy = read_state(self.state_path)   # warnings come with the converge's own read
        self.host_key = read_host_key(self.state_path) if local_state is not None else None
        recorded_keys = {} if local_state is None else {local_state.id: local_state.keys_hash}
        observed = self.observed(self.docker.renter_containers(recorded_keys), local_state)
        known = self.known_etag()
        start = time.monotonic()
        answer, api_error = self.ask(observed, known, self.params['wait_s'])
        self.result['long_poll'] = {'wait_s': self.params['wait_s'], 'held_s': round(time.monotonic() - start, 2),
                                    'lease_changed': None, 'paced_s': None}
        return HeldCheckin(answer, api_error, known)

    def known_etag(self):
        etag, warning = read_lease_etag(self.checkin_path)
        if warning:
            self.module.warn(warning)
        return etag

    def checkin(self, containers, local_state, held):
        """(api_ok, desired lease, server_time, lease etag) from the held check-in, or from one made now when
        there is none or another converge ran while it was held (its answer may be older than that run's);
        errors end up in result['api_error']."""
        if held is not None and self.known_etag() == held.sent_etag:
            answer, api_error = held.answer, held.api_error
        else:
            answer, api_error = self.ask(self.observed(containers, local_state))
        if api_error:
            self.result['api_error'] = api_error
            return False, None, None, None
        try:
            desired = _lease.parse_checkin(answer)
            server_time = _lease.parse_server_time(answer)
            etag = _lease.parse_lease_etag(answer)
        except _lease.LeaseError as exc:
            self.result['api_error'] = 'check-in answer rejected: %s' % to_native(exc)
            return False, None, None, None
        interval = answer.get('checkin_interval_s')
        if isinstance(interval, int) and not isinstance(interval, bool):
            self.result['checkin_interval_s'] = interval
        return True, desired, server_time, etag

    def remember_etag(self, etag):
        """Keep the lease etag of the answer this run converged to (written only when it changes)."""
        if etag is None or self.module.check_mode or self.params['state'] != 'present':
            return
        if etag == self.known_etag():
            return
        try:
            write_lease_etag(self.checkin_path, etag)
        except OSError as exc:
            self.module.warn('the lease etag could not be remembered in %s: %s' % (self.checkin_path, to_native(exc)))
            return
        self.new_etag = etag

    def send_checkin(self, observed, lease_etag=None, wait_s=0):
        """One check-in that reports the wipe receipts kept, and forgets those the answer acknowledges."""
        report, warnings = self.outbox.report(create_key=not self.module.check_mode)
        for warning in warnings:
            self.module.warn(warning)
        host_key = self.lease_host_key(observed.get('lease_id'))
        if host_key is not None:
            # v1: an added field; the marketplace shows it (and its fingerprint) to the lease's renter
            report = dict(report, host_public_key=host_key)
        answer = client_from_module(self.module).checkin(observed, report, lease_etag=lease_etag, wait_s=wait_s)
        if report.get('receipts') and isinstance(answer, dict) and not self.module.check_mode:
            acknowledged, warnings = self.outbox.settle(answer)
            self.result['receipts']['acknowledged'].extend(acknowledged)
            for warning in warnings:
                self.module.warn(warning)
        return answer

    def lease_host_key(self, lease_id):
        """The host public key line this module made for lease `lease_id`, or None: the state file's record,
        else (a lost state file) the copy kept in the lease's login directory."""
        if lease_id is None:
            return None
        if self.host_key is None or self.host_key[0] != lease_id:
            public = _renter_login.read_host_public_key(self.params['state_dir'], lease_id)
            if public is None:
                return None
            self.host_key = (lease_id, public)
        return self.host_key[1]

    def deliver_receipts(self, api_ok):
        """Report the receipts this run signed, and a host key it made, at once, in one more check-in (only
        when the marketplace answered this run's check-in; otherwise the next runs report them)."""
        if api_ok and (self.result['receipts']['signed'] or self.new_host_key) and not self.module.check_mode:
            running = self.result['container_id'] is not None
            observed = dict(self.observed([], None), lease_id=self.result['lease_id'],
                            container='running' if running else 'absent', renter_containers=int(running))
            try:
                self.send_checkin(observed)
            except MarketplaceError as exc:
                self.module.warn('the wipe receipts are kept and reported at the next check-in: %s' % to_native(exc))
        self.result['receipts']['pending'] = len(self.outbox.pending()[0])

    def sign_wipe(self, lease_id, removed, reason):
        """The lease's volumes are gone: sign the receipt of the wipe and keep it until acknowledged."""
        wiped = dict(removed, containers=self.wiped.pop(lease_id, []))
        try:
            self.outbox.record(lease_id, wiped, self.now, reason)
        except (_receipts.ReceiptError, OSError) as exc:
            self.module.warn('lease %s was wiped but its receipt could not be signed: %s' % (lease_id, to_native(exc)))
            return
        self.result['receipts']['signed'].append(lease_id)

    def marketplace_time(self, api_ok, server_time):
        """The marketplace's clock: its answer's, or the estimate from the last check-in it answered;
        a new check-in is remembered (only when the remembered one would mislead)."""
        local_now = datetime.datetime.now(datetime.timezone.utc)
        boot = _clock.read_boot()
        anchor, warning = read_anchor(self.clock_path)
        if warning:
            self.module.warn(warning)
        if server_time is not None:
            now, source = server_time, _clock.SOURCE_MARKETPLACE
            self.remember_anchor(anchor, _clock.anchor_at(server_time, local_now, boot))
        elif api_ok:
            now, source = local_now, _clock.SOURCE_LOCAL   # a marketplace that sends no server_time
        else:
            now, source = _clock.marketplace_now(anchor, boot, local_now)
        self.result['clock'] = {'source': source, 'marketplace_time': _lease.format_time(now),
                                'device_ahead_s': int(round((local_now - now).total_seconds()))}
        return now

    def remember_anchor(self, saved, fresh):
        if self.module.check_mode or not _clock.anchor_is_stale(saved, fresh):
            return
        try:
            write_anchor(self.clock_path, fresh)
        except OSError as exc:
            self.module.warn('the marketplace clock could not be remembered in %s: %s' % (self.clock_path, to_native(exc)))

    def run(self, held=None):
        """One converge (under the state lock); `held`: the long-poll check-in made before it. Raises
        ConvergeFailed."""
        (local_state, frozen_at), warning = read_local_state(self.state_path)
        if warning:
            self.module.warn(warning)
        self.host_key = read_host_key(self.state_path) if local_state is not None else None
        PHASES.mark('read the state file')
        volumes = self.docker.lease_volumes()
        PHASES.mark('docker: lease volumes')
        recorded_keys = {} if local_state is None else {local_state.id: local_state.keys_hash}
        containers = self.docker.renter_containers(recorded_keys)
        PHASES.mark('docker: renter containers')
        api_ok, desired, server_time, etag = self.checkin(containers, local_state, held)
        PHASES.mark('check-in (receipt key, HTTP)')
        now = self.now = self.marketplace_time(api_ok, server_time)
        if self.params['state'] == 'absent':
            self.refuse_live_lease(desired if api_ok else local_state, now)
            desired, api_ok = None, True
        desired, fitted = _rental.fit_to_device(desired, _sandbox.capacity(self.params['memory_reserve_mb']))
        grace = datetime.timedelta(seconds=self.params['grace_s'])
        plan = _rental.decide(desired, api_ok, containers, local_state, now, volumes, publish=self.publish,
                              frozen_at=frozen_at, grace=grace)
        refusal = self.preflight(plan)
        PHASES.mark('clock, decide, preflight')
        if refusal:
            self.result['refused'] = refusal
            plan.actions = [action for action in plan.actions if action.kind in DONE_WHEN_REFUSED]

        if self.result['api_error']:
            self.module.warn('%s; nothing live was wiped.' % self.result['api_error'])
        for warning in plan.warnings + fitted:
            self.module.warn(warning)

        self.result['actions'] = [a.to_dict() for a in plan.actions]
        self.result['changed'] = plan.changed
        if self.module._diff:
            self.result['diff'] = {'before': plan.diff_before, 'after': plan.diff_after}
        container_id = plan.keep.id if plan.keep is not None else None
        if not self.module.check_mode:
            container_id = self.apply(plan, container_id)

        lease = None if refusal else plan.lease_after
        self.result['lease_id'] = None if lease is None else lease.id
        self.result['lease'] = None if lease is None else lease.summary()
        self.result['container_id'] = None if lease is None else container_id
        if lease is not None and plan.frozen_at is not None:
            self.result['frozen'] = {'since': _lease.format_time(plan.frozen_at),
                                     'wipe_at': _lease.format_time(plan.frozen_at + grace)}
        if lease is not None:
            self.login_message(plan, lease, container_id)
            PHASES.mark('login message')
            fresh = bool(plan.actions) and not self.module.check_mode
            self.result['disk_limit_enforced'], self.result['disk_limit_reason'] = self.disk_status(lease, fresh)
            self.report_sandbox(plan, container_id)
            PHASES.mark('report: disk status, sandbox')
        self.deliver_receipts(api_ok)
        PHASES.mark('receipts')

        if refusal:
            raise ConvergeFailed('%s; nothing of that lease was created' % refusal)
        if self.result['api_error'] and self.params['fail_on_api_error']:
            raise ConvergeFailed(self.result['api_error'])
        if api_ok:
            self.remember_etag(etag)
        PHASES.mark('remember the lease etag')

    def refuse_live_lease(self, lease, now):
        """Fail unless forced when `lease` (the marketplace's, or the local one while it is down) is live."""
        if lease is not None and not lease.expired(now) and not self.params['force']:
            raise ConvergeFailed('lease %s is live until %s: end the rental first, or set force=true to cut it; '
                                 'nothing was changed' % (lease.id, _lease.format_time(lease.expires_at)))

    def preflight(self, plan):
        """Why the lease to create cannot be created here (None: it can), before anything changes."""
        lease = plan.lease_after
        if lease is None or 'create' not in plan.kinds():
            return None
        if not self.docker.image_present(lease.image):
            return ('image %s of lease %s is not present on this device (renter images are not pulled or built '
                    'by this module)' % (lease.image, lease.id))
        allowed = self.params['allowed_images']
        if allowed and not self.docker.image_allowed(lease.image, allowed):
            return ('image %s of lease %s is not one of the renter images this device allows (allowed_images: %s)'
                    % (lease.image, lease.id, ', '.join(allowed)))
        if self.params['require_isolation']:
            problem = _sandbox.isolation_problem(self.params['isolation_script'])
            if problem:
                return 'lease %s is not started: %s' % (lease.id, problem)
        if self.docker.disk_status(lease.id)[0] is None:   # a new lease disk
            return _sandbox.disk_refusal(lease, self.docker.disk_dir, self.params['disk_reserve_mb'])
        return None

    def disk_status(self, lease, fresh=True):
        enforced, reason = self.docker.disk_status(lease.id, fresh)
        if enforced is None:   # no volume yet (check mode): would it be enforced?
            unsupported = LeaseDisk.unsupported_reason()
            enforced = unsupported is None
            reason = 'the lease volume would be a loop-mounted ext4 file system' if enforced else unsupported
        return enforced, reason

    def require_disk_limit(self):
        """The option, or by default: required wherever this device can enforce it."""
        if self.params['require_disk_limit'] is not None:
            return self.params['require_disk_limit']
        return LeaseDisk.unsupported_reason() is None

    def apply(self, plan, container_id):
        lease = plan.lease_after
        done = []
        if plan.actions:
            os.makedirs(self.params['state_dir'], mode=0o700, exist_ok=True)
        step = None
        try:
            for step in plan.actions:
                container_id = self.apply_one(step, lease, container_id, plan)
                done.append(step.kind)
                PHASES.mark('apply: %s' % step.kind)
            step = _rental.Action('limit_bandwidth', None if lease is None else lease.id)
            self.shape(lease, container_id, fresh=bool(done))
            PHASES.mark('bandwidth cap (checked or set)')
        except SdkMissing:
            raise
        except (DockerException, RentalDockerError, _sandbox.SandboxError, OSError) as exc:
            raise ConvergeFailed('%s of lease %s failed after %s: %s' % (
                step.kind, step.lease_id, done or 'no change', to_native(exc)))
        return container_id

    def apply_one(self, action, lease, container_id, plan):
        kind = action.kind
        if kind == 'remove_container':
            self.docker.remove_container(action.container_id)
            if action.lease_id is not None:
                self.wiped.setdefault(action.lease_id, []).append(action.container_id)
            if action.container_id == container_id:
                container_id = None
        elif kind == 'remove_volume':
            removed = self.docker.remove_volume(action.lease_id)
            _renter_login.remove_login_dir(self.params['state_dir'], action.lease_id)
            self.sign_wipe(action.lease_id, removed, action.reason)
        elif kind == 'mount_disk':
            self.docker.mount_disk(action.lease_id)
        elif kind == 'reset_system':
            self.docker.reset_system(action.lease_id, self.engine_owner())
        elif kind == 'create':
            owner = self.engine_owner()
            self.docker.ensure_network(self.sandbox.bridge)
            self.docker.ensure_volume(lease, self.require_disk_limit(), owner)
            login_dir = _renter_login.login_dir(self.params['state_dir'], lease.id)
            os.makedirs(login_dir, mode=0o755, exist_ok=True)
            container_id = self.docker.create(lease, self.publish, self.sandbox, owner, login_dir=login_dir,
                                              prepare=lambda new_id: self.prepare_container(new_id, lease))
            # the host key is remembered with the lease at once (a recreated container may need no write_state)
            write_state(self.state_path, lease, plan.frozen_at, self.lease_host_key(lease.id))
        elif kind == 'start':
            self.docker.start(action.container_id, action.lease_id)
        elif kind == 'stop':
            self.docker.stop(action.container_id)
        elif kind == 'update_keys':
            self.docker.update_keys(action.container_id, lease)
        elif kind == 'end_sessions':
            self.end_sessions(action)
        elif kind == 'update_limits':
            self.docker.update_limits(action.container_id, lease)
        elif kind == 'resize_disk':
            self.resize_disk(lease, container_id)
        elif kind == 'write_state':
            write_state(self.state_path, lease, plan.frozen_at,
                        None if lease is None else self.lease_host_key(lease.id))
        return container_id

    def prepare_container(self, container_id, lease):
        """Before the first start of a new renter container: its host key, and its login message.

        The key is made here (ssh-keygen), written into the container's /etc/ssh (whose init keeps a key it
        finds) and dropped from memory; only its public line is kept, in the state file. A container made
        again for the same lease keeps the key its /etc volume holds when it is the one remembered."""
        remembered = self.lease_host_key(lease.id)
        current = self.docker.host_public_key(container_id)
        try:
            same = remembered is not None and current is not None and \
                _renter_login.parse_host_public_key(current) == remembered
        except ValueError:
            same = False
        if not same:
            try:
                host_key = _renter_login.generate_host_key(self.params['state_dir'])
            except _renter_login.HostKeyError as exc:
                raise RentalDockerError('the host key of lease %s could not be made: %s' % (lease.id, exc))
            self.docker.put_host_key(container_id, host_key)
            _renter_login.write_host_public_key(self.params['state_dir'], lease.id, host_key.public)
            self.host_key = (lease.id, host_key.public)
            self.new_host_key = True
            del host_key
        text = self.motd_text(lease, self.engine_owner() is not None)
        _renter_login.write_motd(self.params['state_dir'], lease.id, text)

    def motd_text(self, lease, root_login):
        return _renter_login.motd_text(lease, self.lease_host_key(lease.id),
                                       web_port=int(_rental.WEB_PORT.split('/', maxsplit=1)[0]),
                                       root_login=root_login)

    def login_message(self, plan, lease, container_id):
        """Keep the lease's login message up to date (an extension changes its expiry): written into the lease's
        login directory, which its container mounts read-only, so the renter sees it at the next login without
        a restart. A container made by a version without that mount is left alone (no recreation, no data lost):
        its renter sees the message its init wrote at start, without the expiry, until the next lease."""
        public = self.lease_host_key(lease.id)
        self.result['host_key'] = None if public is None else {
            'public_key': public, 'fingerprint': _renter_login.host_key_fingerprint(public)}
        if 'create' in plan.kinds():
            self.result['login_message'] = 'written'   # with the new container, before its first start
            return
        if container_id is None:
            return
        if not self.docker.has_login_dir(container_id):
            self.result['login_message'] = 'not mounted'
            return
        text = self.motd_text(lease, self.docker.root_login(container_id))
        before = _renter_login.read_motd(self.params['state_dir'], lease.id)
        if before == text:
            self.result['login_message'] = 'unchanged'
            return
        if not self.module.check_mode:
            _renter_login.write_motd(self.params['state_dir'], lease.id, text)
        self.result['login_message'] = 'written'
        self.result['changed'] = True
        self.result['actions'].append({'action': 'write_login_message', 'lease_id': lease.id, 'container': None,
                                       'reason': 'expires %s' % _lease.format_time(lease.expires_at)})
        if self.module._diff and isinstance(self.result.get('diff'), dict):
            self.result['diff']['before']['login_message'] = before or ''
            self.result['diff']['after']['login_message'] = text

    def end_sessions(self, action):
        """End the SSH sessions of the running container from the host; the count goes into the action's reason."""
        state = self.docker.container_state(action.container_id, fresh=True)
        ended = 0
        if state.get('Running') and state.get('Pid'):
            ended = _sandbox.end_ssh_sessions(state['Pid'], action.container_id)
        for done in self.result['actions']:
            if done['action'] == 'end_sessions':
                done['reason'] = 'ended %d SSH session%s (%s)' % (ended, '' if ended == 1 else 's', action.reason)

    def engine_owner(self):
        """The renter's root on the host (user-namespace remapping) or None; asked once, when needed."""
        if self.owner is _UNKNOWN:
            self.owner = self.docker.engine_owner()
        return self.owner

    def resize_disk(self, lease, container_id):
        grow_mb = lease.limits.disk_gb * 1024 - (LeaseDisk(self.docker.disk_dir, lease.id).size_gb() or 0) * 1024
        if grow_mb + self.params['disk_reserve_mb'] > _facts.free_bytes(self.docker.disk_dir) // MIB:
            self.module.warn('the disk of lease %s is not grown to %d GB: this device has not enough free space'
                             % (lease.id, lease.limits.disk_gb))
            return
        self.docker.resize_disk(lease, container_id)

    def shape(self, lease, container_id, fresh):
        """Cap the running renter container's bandwidth, once per container start (see _sandbox)."""
        rate_kbit = self.params['bandwidth_mbit'] * 1000
        if lease is None or container_id is None or not rate_kbit:
            return
        state = self.docker.container_state(container_id, fresh)
        if not state.get('Running'):
            return
        record = {'container': container_id, 'started_at': state.get('StartedAt'), 'kbit': rate_kbit}
        if _sandbox.read_shaping(self.params['state_dir']) == record:
            return
        _sandbox.shape(state['Pid'], rate_kbit)
        _sandbox.write_shaping(self.params['state_dir'], record)
        self.result['changed'] = True
        self.result['actions'].append({'action': 'limit_bandwidth', 'lease_id': lease.id, 'container': None,
                                       'reason': '%d Mbit/s each way' % self.params['bandwidth_mbit']})

    def report_sandbox(self, plan, container_id):
        if container_id is None:
            return
        fresh = bool(plan.actions) and not self.module.check_mode
        report = self.docker.container_sandbox(container_id, fresh=fresh)
        report['bandwidth_mbit'] = self.params['bandwidth_mbit'] or None
        report['isolation_rules'] = 'checked' if self.params['require_isolation'] else 'not checked'
        self.result['sandbox'] = report
        if report['disk'] != 'whole':
            self.module.warn('the renter container of lease %s does not have its whole disk limited (disk: %s): %s'
                             % (plan.lease_after.id, report['disk'], self.result['disk_limit_reason']))


def state_lock(module):
    """The lock that serialises converges on this device; none is needed (or can be made without
    writing) in check mode on a device that has no state directory yet."""
    if module.check_mode and not os.path.isdir(module.params['state_dir']):
        return contextlib.nullcontext()
    return StateLock(module.params['state_dir'])


def summary(result):
    actions = ', '.join(action['action'] for action in result['actions']) or 'none'
    line = 'lease %s, actions %s' % (result['lease_id'] or 'none', actions)
    if result['api_error']:
        line += ' - API error: %s' % result['api_error']
    return line


def main():
    argument_spec = dict(MARKETPLACE_COMMON_ARGS, **DOCKER_HOST_ARGS, **STATE_DIR_ARGS)
    argument_spec.update(
        state=dict(type='str', default='present', choices=['present', 'absent']),
        force=dict(type='bool', default=False),
        local_port=dict(type='int', default=2222),
        web_local_port=dict(type='int', default=2280),
        fail_on_api_error=dict(type='bool', default=False),
        require_disk_limit=dict(type='bool'),
        disk_reserve_mb=dict(type='int', default=1024),
        memory_reserve_mb=dict(type='int', default=256),
        allowed_images=dict(type='list', elements='str', default=[]),
        require_isolation=dict(type='bool', default=True),
        isolation_script=dict(type='path', default=_sandbox.DEFAULT_ISOLATION_SCRIPT),
        renter_bridge=dict(type='str', default='p2pvps0'),
        bandwidth_mbit=dict(type='int', default=20),
        write_bps=dict(type='int', default=10 * 1024 * 1024),
        write_iops=dict(type='int', default=300),
        wait_s=dict(type='int', default=0),
        grace_s=dict(type='int', default=86400),
    )
    global PHASES
    PHASES = Phases(os.environ.get('P2PVPS_RENTAL_PHASES') == '1')
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    PHASES.mark('arguments (AnsibleModule)')
    wait_s = module.params['wait_s']
    pace = Pace(min(max(wait_s, 0), MAX_WAIT_S))
    # The Docker SDK is imported only when a change needs it (or the Engine is not on a unix socket);
    # without it such a run fails with missing_required_lib's message.
    problem = option_problem(module.params)
    if problem:
        result, failure, lease_changed, trace = {}, problem[0], False, None
    else:
        result, failure, lease_changed, trace = converge(module)
    if wait_s:
        finish_long_poll(result, pace, lease_changed)
    if PHASES.enabled:
        result['phases'] = PHASES.report()
    if trace:
        module.fail_json(msg=failure, exception=trace, **result)
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(msg=summary(result), **result)


def converge(module):
    """(result, failure message or None, whether the run converged to a lease that differs from the one the
    device had, traceback or None): the long-poll check-in when asked for, then the converge under the state
    lock."""
    manager = None
    trace = None
    try:
        manager = RentalManager(module)
        held = manager.long_poll() if module.params['wait_s'] else None
        with state_lock(module):
            PHASES.mark('set up, long-poll, state lock')
            manager.run(held)
        failure = None
    except ConvergeFailed as exc:
        failure = to_native(exc)
    except StateLockTimeout as exc:
        failure = 'rental converge not run: %s' % to_native(exc)
    except SdkMissing as exc:
        failure, trace = to_native(exc), exc.exception
    except DockerException as exc:
        failure = 'Docker Engine error at %s: %s' % (module.params['docker_host'], to_native(exc))
    except (RentalDockerError, _sandbox.SandboxError, OSError) as exc:
        failure = 'rental converge failed: %s' % to_native(exc)
    if manager is None:
        return {}, failure, False, trace
    return manager.result, failure, failure is None and manager.new_etag is not None, trace


def finish_long_poll(result, pace, lease_changed):
    """End a run with O(wait_s) now when it converged to a changed lease, else when it has lasted wait_s."""
    long_poll = result.setdefault('long_poll', {})
    long_poll['lease_changed'] = lease_changed
    long_poll['paced_s'] = 0.0 if lease_changed else round(pace.hold(), 2)


BRIDGE_RE = re.compile(r'^[A-Za-z0-9_.-]{1,15}$')
IMAGE_ID_RE = re.compile(r'^sha256:[a-f0-9]{64}$')


def option_problem(params):
    """(message, None) for an option missing or out of range, else None."""
    # state=absent (decommissioning) works from the local lease alone; present needs the marketplace.
    missing = params['state'] == 'present' and missing_connection_option(params, DEVICE_REQUIRED)
    if missing:
        return (missing + ' with state=present', None)
    for name, low in (('local_port', 1), ('web_local_port', 0)):
        if not low <= params[name] <= 65535:
            return ('%s must be between %d and 65535' % (name, low), None)
    if params['web_local_port'] == params['local_port']:
        return ('web_local_port and local_port must differ', None)
    if not 0 <= params['wait_s'] <= MAX_WAIT_S:
        return ('wait_s must be between 0 and %d' % MAX_WAIT_S, None)
    for name in ('disk_reserve_mb', 'memory_reserve_mb', 'bandwidth_mbit', 'write_bps', 'write_iops', 'grace_s'):
        if params[name] < 0:
            return ('%s must be 0 or more' % name, None)
    if not BRIDGE_RE.match(params['renter_bridge']):
        return ('renter_bridge must be a Linux interface name (1-15 of A-Z a-z 0-9 _ . -)', None)
    for image in params['allowed_images']:
        try:
            IMAGE_ID_RE.match(image) or _lease.parse_image(image)
        except _lease.LeaseError:
            return ('allowed_images: %r is neither an image reference nor an image id' % image[:80], None)
    return None


if __name__ == '__main__':
    main()
