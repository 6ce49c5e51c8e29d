#!/usr/bin/env bash
# Build the p2pvps renter image from this recipe on a Debian machine with Docker: debootstrap a
# minimal Debian with the packages of packages.txt, copy rootfs/ into it, run setup.sh in it,
# then `docker import` it with the changes of import-changes. Needs root, debootstrap and network
# access to a Debian mirror; takes minutes (a Raspberry Pi: 5-15, most of it the download).
#   build.sh hash                 print the recipe's hash (the suite and every file of the recipe)
#   build.sh mirror               print the first Debian URI of this machine's apt sources
#   build.sh build TAG [MIRROR]   build the image and tag it TAG; MIRROR defaults to the first
#                                 Debian URI of this machine's apt sources
# P2PVPS_IMAGE_SUITE: the Debian suite (default bookworm). The image carries the recipe's hash in
# its label org.p2pvps.recipe, so a caller can tell whether an image is this recipe's build.
set -euo pipefail
root=""
here="$(cd "$(dirname "$0")" && pwd)"
suite="${P2PVPS_IMAGE_SUITE:-bookworm}"

recipe_hash() {
    { echo "$suite"; find "$here" -type f -print0 | LC_ALL=C sort -z | xargs -0 cat; } | sha256sum | cut -c1-16
}

debian_mirror() {
    # The mirror this machine already uses: first Debian URI in the apt sources.
    local uri
    uri="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)"
    if [ -z "$uri" ]; then
        uri="$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | grep -v -- '-security' | awk '{print $2}' | head -n1 || true)"
    fi
    [ -n "$uri" ] || { echo "no Debian mirror found in /etc/apt sources" >&2; exit 1; }
    echo "$uri"
}

build() {
    local tag="$1" mirror="${2:-}" packages line changes=()
    [ -n "$mirror" ] || mirror="$(debian_mirror)"
    command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 1; }
    root="$(mktemp -d /var/tmp/p2pvps-renter-XXXXXX)"
    trap '[ -z "$root" ] || rm -rf "$root"' EXIT
    packages="$(grep -v '^#' "$here/packages.txt" | xargs | tr ' ' ',')"
    debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >/dev/null
    install -m 0755 "$here/setup.sh" "$root/tmp/setup.sh"
    cp -a "$here/rootfs/." "$root/"
    chroot "$root" /bin/sh /tmp/setup.sh
    rm -rf "$root/tmp/"* "$root/var/lib/apt/lists/"* "$root/var/cache/apt/archives/"*.deb
    : > "$root/etc/resolv.conf"
    while IFS= read -r line; do [ -n "$line" ] && changes+=(--change "$line"); done < "$here/import-changes"
    changes+=(--change "LABEL org.p2pvps.recipe=$(recipe_hash)")
    tar --numeric-owner -C "$root" -c . | docker import "${changes[@]}" - "$tag" >/dev/null
}

case "${1:-}" in
    hash) recipe_hash ;;
    mirror) debian_mirror ;;
    build) [ -n "${2:-}" ] || { echo "usage: $0 build TAG [MIRROR]" >&2; exit 64; }; build "$2" "${3:-}" ;;
    *) echo "usage: $0 hash | mirror | build TAG [MIRROR]" >&2; exit 64 ;;
esac
