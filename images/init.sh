#!/bin/busybox sh
# klpt guest init: mount the pseudo file systems, record the kernel log with
# sequence numbers, bring up the user-mode network and start dropbear.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /run /tmp /var/log
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null

# Every /dev/kmsg record ("prio,seq,usec,flags;text"), for the host to window
# steps by sequence number. cat exits on EPIPE when records were overwritten;
# restart it (the host drops duplicate sequence numbers).
( while :; do cat /dev/kmsg; sleep 1; done ) >> /run/kmsg 2>/dev/null &

# The livepatch core's pr_debug transition lines, as the kernel selftests
# enable them; the per-task lines are noise.
if [ -w /sys/kernel/debug/dynamic_debug/control ]; then
	echo 'file kernel/livepatch/* +p' > /sys/kernel/debug/dynamic_debug/control
	echo 'func klp_try_switch_task -p' > /sys/kernel/debug/dynamic_debug/control
fi

[ -f /etc/klpt-modules ] && while read -r m; do insmod "/lib/modules/$m.ko"; done < /etc/klpt-modules

[ -e /sys/class/net/eth0 ] || echo "klpt-init: no eth0: the kernel has no virtio-net driver (build it in, or install its modules under lib/modules)"
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2

# An ed25519 host key only: `dropbear -R` would also make an RSA key on the
# first connection, which takes minutes under emulation (s390x). Root logs
# in with klpt's key only: its password is locked (`*` in /etc/shadow; a
# `!` would make dropbear refuse the account, keys included) and there is
# no `-B` (which lets anyone into a blank-password account with the `none`
# method). -E: dropbear logs to /run/dropbear.log instead of a syslog the
# guest does not run.
mkdir -p /etc/dropbear
dropbearkey -t ed25519 -f /etc/dropbear/dropbear_ed25519_host_key >/dev/null 2>>/run/dropbear.log
dropbear -r /etc/dropbear/dropbear_ed25519_host_key -E -p 22 2>>/run/dropbear.log
# What a recipe adds to the boot (`files:` under /etc/klpt/init.d).
for f in /etc/klpt/init.d/*.sh; do [ -f "$f" ] && . "$f"; done

echo "KLPT-READY uptime=$(cut -d' ' -f1 /proc/uptime)"
while :; do sleep 3600; done
