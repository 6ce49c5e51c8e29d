#!/bin/sh
# Runs inside the debootstrapped root of the simulated Pi device image.
set -eu
# The "pi" user of Raspberry Pi OS: passwordless sudo, login by key only.
useradd -m -s /bin/bash -G sudo pi
passwd -l pi >/dev/null
echo 'pi ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/010_pi-nopasswd
chmod 0440 /etc/sudoers.d/010_pi-nopasswd
install -d -m 0700 -o pi -g pi /home/pi/.ssh
# No host keys baked into the image: each device makes its own on first boot.
rm -f /etc/ssh/ssh_host_*
cat > /etc/systemd/system/p2pvps-hostkeys.service <<'UNIT'
[Unit]
Description=Generate this device's SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
ln -s /etc/systemd/system/p2pvps-hostkeys.service /etc/systemd/system/multi-user.target.wants/p2pvps-hostkeys.service
# A Pi has devtmpfs; a container's /dev is a tmpfs without the loop devices the kernel hands
# out (the test fleet lets devices use them): make their nodes at boot.
cat > /etc/systemd/system/p2pvps-loop-nodes.service <<'UNIT'
[Unit]
Description=Create loop device nodes (simulated Pi)
DefaultDependencies=no
Before=sysinit.target
ConditionPathExists=/dev/loop-control

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'for i in $(seq 0 63); do [ -e /dev/loop$i ] || mknod -m 660 /dev/loop$i b 7 $i; done'

[Install]
WantedBy=sysinit.target
UNIT
mkdir -p /etc/systemd/system/sysinit.target.wants
ln -s /etc/systemd/system/p2pvps-loop-nodes.service /etc/systemd/system/sysinit.target.wants/p2pvps-loop-nodes.service
cat > /etc/ssh/sshd_config.d/10-device.conf <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
CONF
# Units that have no business in a container.
for unit in getty@tty1.service console-getty.service systemd-remount-fs.service \
            systemd-udevd.service systemd-udev-trigger.service sys-kernel-debug.mount \
            systemd-logind.service apt-daily.timer apt-daily-upgrade.timer; do
    ln -sf /dev/null "/etc/systemd/system/$unit"
done
systemctl set-default multi-user.target >/dev/null 2>&1 || ln -sf /lib/systemd/system/multi-user.target /etc/systemd/system/default.target
: > /etc/machine-id
echo raspberrypi > /etc/hostname
