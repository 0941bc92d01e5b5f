# klpt: @WHAT@
__m='@MARKER@'
__k() { printf '\n%s %s\n' "$__m" "$*"; }
__now() { read -r __u __x < /proc/uptime; __u=${__u%.*}${__u#*.}; while [ "${__u#0}" != "$__u" ]; do __u=${__u#0}; done; __u=$((__u+0)); }
exec 3>&2 2>/dev/null
__now; __end=$((__u + @END_CS@)); __s=0
