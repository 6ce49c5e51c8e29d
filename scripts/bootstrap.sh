#!/usr/bin/env bash
# Everything a fresh Debian (bookworm) machine needs, idempotent and quick when
# already done: Debian packages, a running Docker Engine, the venv, the images.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
log() { printf '[bootstrap %4ss] %s\n' "$SECONDS" "$*"; }

need_packages=(docker.io debootstrap git openssh-client openssh-server python3 python3-venv
               iptables iproute2 ca-certificates curl xfsprogs e2fsprogs shellcheck libfaketime
               postgresql docker-registry)
# A job with needs of its own adds them here (scripts/emulated-arch.sh: qemu-user-static).
read -r -a extra_packages <<< "${P2PVPS_EXTRA_PACKAGES:-}"
need_packages+=("${extra_packages[@]}")
missing=()
for pkg in "${need_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # openssh-server is only needed for its sshd binary (tests run their own instances), and
    # docker-registry for its binary (test_renter_image.py runs one inside a simulated Pi).
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl disable --now ssh.service >/dev/null 2>&1 || true
        systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
    elif [[ " ${missing[*]} " == *" docker-registry "* ]]; then
        # Without systemd the package's init script may have started it (port 5000, every address).
        /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
        update-rc.d docker-registry disable >/dev/null 2>&1 || true
    fi
fi

if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    mkdir -p /var/log
    nohup dockerd >/var/log/p2pvps-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -n 30 /var/log/p2pvps-dockerd.log; exit 1; }
fi
log "docker $(docker version --format '{{.Server.Version}}')"

log "python venv"
bash "$root/scripts/setup-venv.sh"
log "local images"
bash "$root/tests/images/build.sh"
log "ready"
