cd /sys/kernel/livepatch 2>/dev/null && for p in *; do
	[ -d "$p" ] || continue
	echo "@TAG@P $p"
	for a in "$p"/*; do
		n=${a##*/}
		if [ -f "$a" ]; then
			echo "@TAG@A $n $(head -c 200 "$a" 2>/dev/null)"
		elif [ -f "$a/patched" ]; then
			echo "@TAG@O $n $(cat "$a/patched")"
		elif [ -d "$a" ]; then
			echo "@TAG@O $n ?"
		fi
	done
done; cd /
