t=''
for p in /sys/kernel/livepatch/*; do
	[ "$(cat $p/transition 2>/dev/null)" = 1 ] && t=$p
done
[ -z "$t" ] && { echo 'no transition in progress'; exit 0; }
target=$(cat $t/enabled)
echo "transition: ${t##*/} (target state $target)"
for s in /proc/[0-9]*/task/[0-9]*/patch_state; do
	d=${s%/patch_state}; v=$(cat $s 2>/dev/null)
	[ -n "$v" ] && [ "$v" != "$target" ] && { echo; echo "== ${d#/proc/} $(cat $d/comm) patch_state=$v"; cat $d/stack 2>&1; }
done
