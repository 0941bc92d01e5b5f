echo @TAG_DEBUG@ >> @KMSG@
__now; __se=$((__u + 2000))
while :; do @READ_LOG@; case $__l in *@TAG@*) break;; esac; __now; [ $__u -ge $__se ] && break; usleep 2000; done
cat @TAINTED@; __k taint
printf '%s' "${__l%x}"; __k log
