# shellcheck shell=bash
# Source this file to use the project's venv and collections:  . scripts/env.sh
_p2pvps_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$_p2pvps_root/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$_p2pvps_root/.cache/collections"
export ANSIBLE_ROLES_PATH="$_p2pvps_root/roles"
export ANSIBLE_HOST_KEY_CHECKING=False
export ANSIBLE_NOCOLOR=1
export ANSIBLE_FORCE_COLOR=0
export ANSIBLE_LOCAL_TEMP="${TMPDIR:-/tmp}/ansible-local"
unset _p2pvps_root
