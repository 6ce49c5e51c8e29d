#!/usr/bin/env bash
# Build the local test images (no image registry is reachable from CI):
# debootstrap a Debian root, run the image's setup.sh in it, `docker import`.
# Each image is tagged with a hash of its recipe, so an unchanged recipe is
# never rebuilt; `:latest` always points at the current recipe's build.
# The renter image's recipe ships with the collection (roles/renter_image/files/renter, whose
# build.sh the renter_image role also runs on devices); it is built with that script.
#   usage: tests/images/build.sh [device|device-docker|gateway|renter ...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
suite="${P2PVPS_IMAGE_SUITE:-bookworm}"
export P2PVPS_IMAGE_SUITE="$suite"
renter_recipe="$here/../../roles/renter_image/files/renter"

recipe_dir() {
    if [ "$1" = renter ]; then (cd "$renter_recipe" && pwd); else echo "$here/$1"; fi
}

debian_mirror() {
    # The mirror this machine already uses (the renter recipe's build.sh finds it in the apt sources).
    bash "$renter_recipe/build.sh" mirror
}

recipe_hash() {
    # The base image (if any) is part of the recipe.
    local name="$1"
    { echo "$suite"; cat "$here/build.sh"; find "$(recipe_dir "$name")" -type f -print0 | sort -z | xargs -0 cat;
      if [ -f "$here/$name/base" ]; then recipe_hash "$(cat "$here/$name/base")"; fi; } \
        | sha256sum | cut -c1-16
}

build_one() {
    local name="$1" tag root packages
    tag="p2pvps/${name}:$(recipe_hash "$name")"
    if docker image inspect "$tag" >/dev/null 2>&1; then
        echo "image $tag cached"
        docker tag "$tag" "p2pvps/${name}:latest"
        return
    fi
    local start=$SECONDS
    if [ "$name" = renter ]; then
        bash "$renter_recipe/build.sh" build "$tag" "$(debian_mirror)"
        docker tag "$tag" "p2pvps/${name}:latest"
        echo "image $tag built in $((SECONDS - start)) s"
        return
    fi
    root="$(mktemp -d /var/tmp/p2pvps-image-XXXXXX)"
    trap 'umount -R "$root/proc" 2>/dev/null || true; rm -rf "$root"' RETURN
    packages="$(grep -v '^#' "$here/$name/packages.txt" | xargs | tr ' ' ',')"
    if [ -f "$here/$name/base" ]; then
        local base; base="$(cat "$here/$name/base")"
        build_one "$base"
        docker export "$(docker create "p2pvps/${base}:latest" /bin/true)" | tar -C "$root" -x
        docker container prune -f --filter "label!=p2pvps" >/dev/null 2>&1 || true
        cp /etc/resolv.conf "$root/etc/resolv.conf"
        mount -t proc proc "$root/proc"
        chroot "$root" /bin/sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(echo "$packages" | tr ',' ' ')" \
            >"$root.log" 2>&1 || { cat "$root.log" >&2; exit 1; }
        rm -f "$root.log"
        umount "$root/proc"
    else
        debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$(debian_mirror)" >/dev/null
    fi
    install -m 0755 "$here/$name/setup.sh" "$root/tmp/setup.sh"
    [ -d "$here/$name/files" ] && cp -a "$here/$name/files/." "$root/"
    chroot "$root" /bin/sh /tmp/setup.sh
    rm -rf "$root/tmp/"* "$root/var/lib/apt/lists/"* "$root/var/cache/apt/archives/"*.deb
    : > "$root/etc/resolv.conf"
    local changes=() line
    while IFS= read -r line; do [ -n "$line" ] && changes+=(--change "$line"); done \
        < "$here/$name/import-changes"
    tar --numeric-owner -C "$root" -c . | docker import "${changes[@]}" - "$tag" >/dev/null
    docker tag "$tag" "p2pvps/${name}:latest"
    echo "image $tag built in $((SECONDS - start)) s"
}

if [ "$#" -eq 0 ]; then set -- device device-docker gateway renter; fi
for image in "$@"; do build_one "$image"; done
