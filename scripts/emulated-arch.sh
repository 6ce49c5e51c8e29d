#!/usr/bin/env bash
# The slower, documented job for other architectures (docs/emulated-architectures.md):
# build the simulated Pi device image and the renter image for ARCH with
# `debootstrap --foreign` + the second stage under qemu-user-static.
# Then run the checks (tests/emulated/arm_check.py): the device-side unit tests with the image's
# ARM Python, and one real rental lifecycle with the rental module running as ARM code.
# Not part of .ci/run (it takes longer than the CI budget allows).
#   usage: scripts/emulated-arch.sh arm64|armhf [--build-only]
# Sets up a fresh Debian machine itself (scripts/bootstrap.sh + qemu-user-static).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
log() { printf '[emulated-arch %5ss] %s\n' "$SECONDS" "$*"; }
usage() { sed -n 's/^#   usage: /usage: /p' "$0" >&2; exit 2; }

arch="${1:-}"
build_only=false
case "${2:-}" in
    "") ;;
    --build-only) build_only=true ;;
    *) usage ;;
esac
case "$arch" in
    arm64) qemu=aarch64; platform=linux/arm64; docker_arch=arm64; variant=v8 ;;
    armhf) qemu=arm; platform=linux/arm/v7; docker_arch=arm; variant=v7 ;;
    *) usage ;;
esac
suite="${P2PVPS_IMAGE_SUITE:-bookworm}"
images="$root/tests/images"
# The renter image's recipe: wherever main keeps it (P2PVPS_RENTER_RECIPE overrides).
renter_recipe="${P2PVPS_RENTER_RECIPE:-}"
if [ -z "$renter_recipe" ]; then
    for dir in "$images/renter" "$root"/roles/*/files/renter-image "$root"/roles/*/files/renter; do
        [ -f "$dir/setup.sh" ] && [ -f "$dir/packages.txt" ] && { renter_recipe="$dir"; break; }
    done
fi
[ -n "$renter_recipe" ] || { echo "renter image recipe not found" >&2; exit 1; }

setup_host() {
    # bootstrap.sh installs debootstrap and the rest; qemu-user-static is this job's own need.
    P2PVPS_EXTRA_PACKAGES=qemu-user-static bash "$root/scripts/bootstrap.sh"
}

register_binfmt() {
    # The kernel runs foreign ELF files through qemu. The F flag makes it open the
    # interpreter now, so it also works inside chroots and containers.
    local dir=/proc/sys/fs/binfmt_misc conf="/usr/lib/binfmt.d/qemu-$qemu.conf" line
    [ -e "$dir/register" ] || mount -t binfmt_misc binfmt_misc "$dir"
    if [ -e "$dir/qemu-$qemu" ]; then
        if grep -q '^enabled' "$dir/qemu-$qemu" && grep -q '^flags:.*F' "$dir/qemu-$qemu"; then
            return
        fi
        echo -1 > "$dir/qemu-$qemu"    # registered without F (or disabled): replace it
    fi
    line="$(grep -v '^#' "$conf" | head -n1)"
    case "${line##*:}" in *F*) ;; *) line="${line}F" ;; esac
    echo "$line" > "$dir/register"
    grep -q '^enabled' "$dir/qemu-$qemu"
    log "binfmt_misc: qemu-$qemu registered ($(grep '^flags' "$dir/qemu-$qemu"))"
}

debian_mirror() {
    # The mirror this machine already uses (the renter recipe's build.sh finds it in the apt sources).
    bash "$root/roles/renter_image/files/renter/build.sh" mirror
}

recipe_packages() {
    # packages.txt of the recipe plus the job's own extras (tests/emulated/NAME-packages.txt).
    local recipe="$1" extra="$2"
    cat "$recipe/packages.txt" ${extra:+"$extra"} | grep -v '^#' | xargs | tr ' ' ','
}

# The build directory of the image being built; removed when the build ends, fails or is stopped.
build=""
remove_build() {
    [ -n "$build" ] || return 0
    umount -R "$build/proc" "$build/sys" 2>/dev/null || true
    rm -rf "$build" "$build.log"
    build=""
}
trap remove_build EXIT

set_architecture() {
    # docker import records the host's architecture (its --platform needs an experimental daemon):
    # save the image, write the right one into its config, load it again under the same tag.
    local tag="$1" dir
    dir="$(mktemp -d /var/tmp/p2pvps-arch-XXXXXX)"
    docker save "$tag" | tar -x -C "$dir"
    python3 - "$dir" "$docker_arch" "$variant" <<'PY'
import hashlib, json, os, sys
where, architecture, variant = sys.argv[1:]
with open(os.path.join(where, "manifest.json")) as handle:
    manifest = json.load(handle)
old = manifest[0]["Config"]
with open(os.path.join(where, old)) as handle:
    config = json.load(handle)
config.update(architecture=architecture, variant=variant)
data = json.dumps(config).encode()
new = hashlib.sha256(data).hexdigest() + ".json"
with open(os.path.join(where, new), "wb") as handle:
    handle.write(data)
if new != old:
    os.remove(os.path.join(where, old))
manifest[0]["Config"] = new
with open(os.path.join(where, "manifest.json"), "w") as handle:
    json.dump(manifest, handle)
PY
    docker rmi "$tag" >/dev/null
    tar -C "$dir" -c . | docker load >/dev/null
    rm -rf "$dir"
    [ "$(docker image inspect -f '{{.Architecture}}/{{.Variant}}' "$tag")" = "$docker_arch/$variant" ]
}

build_image() {
    # build_image NAME RECIPE_DIR [EXTRA_PACKAGES_FILE] -> p2pvps/NAME-ARCH:<recipe hash>
    local name="$1" recipe="$2" extra="${3:-}" tag hash start
    hash="$({ echo "$suite $arch"; sed -n '/^build_image()/,/^}/p' "$0"; cat ${extra:+"$extra"};
              find "$recipe" -type f -print0 | sort -z | xargs -0 cat; } | sha256sum | cut -c1-16)"
    tag="p2pvps/${name}-${arch}:${hash}"
    if docker image inspect "$tag" >/dev/null 2>&1; then
        log "image $tag cached"
        docker tag "$tag" "p2pvps/${name}-${arch}:latest"
        return
    fi
    start=$SECONDS
    build="$(mktemp -d "/var/tmp/p2pvps-${name}-${arch}-XXXXXX")"
    log "debootstrap --foreign --arch=$arch $name (first stage, native)"
    debootstrap --foreign --arch="$arch" --variant=minbase \
        --include="$(recipe_packages "$recipe" "$extra")" "$suite" "$build" "$(debian_mirror)" \
        >"$build.log" 2>&1 || { tail -n 30 "$build.log" >&2; exit 1; }
    log "debootstrap second stage under qemu-$qemu"
    chroot "$build" /debootstrap/debootstrap --second-stage >"$build.log" 2>&1 \
        || { tail -n 30 "$build.log" "$build/debootstrap/debootstrap.log" >&2 2>/dev/null; exit 1; }
    rm -f "$build.log"
    [ "$(chroot "$build" dpkg --print-architecture)" = "$arch" ]
    install -m 0755 "$recipe/setup.sh" "$build/tmp/setup.sh"
    for files in "$recipe/files" "$recipe/rootfs"; do   # the test images' files/, the renter recipe's rootfs/
        if [ -d "$files" ]; then cp -a "$files/." "$build/"; fi
    done
    chroot "$build" /bin/sh /tmp/setup.sh
    rm -rf "$build/tmp/"* "$build/var/lib/apt/lists/"* "$build/var/cache/apt/archives/"*.deb
    : > "$build/etc/resolv.conf"
    local changes=() line
    while IFS= read -r line; do [ -n "$line" ] && changes+=(--change "$line"); done \
        < "$recipe/import-changes"
    tar --numeric-owner -C "$build" -c . \
        | docker import "${changes[@]}" - "$tag" >/dev/null
    set_architecture "$tag"
    docker tag "$tag" "p2pvps/${name}-${arch}:latest"
    remove_build
    log "image $tag built in $((SECONDS - start)) s"
}

log "arch $arch (qemu-$qemu, $platform)"
setup_host
register_binfmt
build_image device "$images/device" "$root/tests/emulated/device-packages.txt"
build_image renter "$renter_recipe"
if ! $build_only; then
    log "checks under qemu-$qemu (tests/emulated/arm_check.py)"
    "$root/.venv/bin/python" "$root/tests/emulated/arm_check.py" --arch "$arch"
fi
log "done"
