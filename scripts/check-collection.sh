#!/usr/bin/env bash
# Build the collection tarball, install it into an empty path and check that
# ansible-doc renders every plugin from the installed copy; lint the changelog.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/.cache/build"
rm -rf "$out" && mkdir -p "$out/collections"
cd "$root"
antsibull-changelog lint
ansible-galaxy collection build --force --output-path "$out" . >/dev/null
tarball="$(ls "$out"/p2pvps-fleet-*.tar.gz)"
echo "built $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB)"
ANSIBLE_COLLECTIONS_PATH="$out/collections" ansible-galaxy collection install --force -p "$out/collections" "$tarball" >/dev/null
export ANSIBLE_COLLECTIONS_PATH="$out/collections"
# The renter image's recipe ships with the collection (role renter_image): an operator installing
# from Galaxy builds their renter image with it.
installed="$out/collections/ansible_collections/p2pvps/fleet"
for file in build.sh packages.txt setup.sh import-changes rootfs/usr/local/sbin/p2pvps-renter-init; do
    [ -f "$installed/roles/renter_image/files/renter/$file" ] || { echo "renter recipe: $file not in the collection" >&2; exit 1; }
done
echo "renter image recipe: in the collection"
for type in module inventory; do
    dir=plugins/inventory
    [ "$type" = module ] && dir=plugins/modules
    for file in "$dir"/*.py; do
        [ -e "$file" ] || continue
        name="$(basename "$file" .py)"
        case "$name" in __init__|_*) continue ;; esac
        ansible-doc -t "$type" "p2pvps.fleet.$name" >/dev/null
        echo "ansible-doc -t $type p2pvps.fleet.$name: ok"
    done
done
for role in roles/*/; do
    [ -d "$role" ] || continue
    name="$(basename "$role")"
    ansible-doc -t role "p2pvps.fleet.$name" >/dev/null
    echo "ansible-doc -t role p2pvps.fleet.$name: ok"
done
