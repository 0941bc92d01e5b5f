# Sourced by init.sh in the selftests guest (images/selftests.yaml): what the
# kernel's livepatch selftests expect of an installed system.

# check_result's diff reads bash process substitutions, <(...), as /dev/fd/N.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr

# has_kdir skips every script unless this is a directory (empty is enough:
# the test modules are built on the host and come with the image).
mkdir -p "/lib/modules/$(uname -r)/build"
