cd /sys/kernel/livepatch 2>/dev/null && for p in *; do
	[ -d "$p" ] || continue
	echo "@TAG@P $p"
	for a in "$p"/*; do
		n=${a##*/}; v=
		if [ -f "$a" ]; then
			read -r v < "$a"; echo "@TAG@A $n $v"
		elif [ -f "$a/patched" ]; then
			read -r v < "$a/patched"; echo "@TAG@O $n $v"
		elif [ -d "$a" ]; then
			echo "@TAG@O $n ?"
		fi
	done
done 2>/dev/null; cd /
