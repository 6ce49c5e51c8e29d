#!/bin/sh
set -eu
rm -f /etc/ssh/ssh_host_*
install -d -m 0755 /etc/ssh/authorized_keys /run/sshd
cat > /etc/ssh/sshd_config.d/10-renter.conf <<'CONF'
# Renter VPS: keys only, kept outside the home; PermitRootLogin is set at start
# (05-root.conf, read first) by p2pvps-renter-init.
Port 2222
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
PrintMotd no
CONF
chmod 0755 /usr/local/sbin/p2pvps-renter-init
# The login message: the rental module writes it into a root-owned directory of the device that it
# mounts read-only at /etc/p2pvps-lease, and rewrites it when the lease changes (an extension).
install -d -m 0755 /etc/p2pvps-lease
ln -sfn /etc/p2pvps-lease/motd /etc/motd
