for f in $(find /sys/kernel/livepatch 2>/dev/null | sort); do
	if [ -f "$f" ]; then
		echo "$f: $(cat "$f" 2>&1)"
	else
		echo "$f/"
	fi
done
