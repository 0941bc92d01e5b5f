echo '@TAG@' > /dev/kmsg
end=$(( $(cut -d. -f1 /proc/uptime) + 20 ))
until grep -q '@TAG@$' /run/kmsg; do
	[ $(cut -d. -f1 /proc/uptime) -ge $end ] && break
	usleep 2000
done
cat /proc/sys/kernel/tainted
tail -c +@OFFSET@ /run/kmsg
