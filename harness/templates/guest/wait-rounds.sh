while :; do
@SNAPSHOT@__k snap
@RLOG@__k round
__now; [ $__u -ge $__end ] && break
read -r -t @POLL@ __x && break
done
