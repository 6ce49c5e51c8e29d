#!/bin/sh
# Nested Docker inside a container works with the vfs storage driver.
set -eu
mkdir -p /etc/docker
printf '{\n  "storage-driver": "vfs",\n  "log-driver": "json-file",\n  "log-opts": {"max-size": "10m", "max-file": "3"}\n}\n' > /etc/docker/daemon.json
