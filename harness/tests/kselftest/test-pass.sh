#!/bin/bash
# Two scenarios pass; the one between them is behind an `if` that is false.
. $(dirname $0)/functions.sh
setup_config

start_test "a quiet kernel log"
check_result ""

if [[ "$(uname -r)" == "not-this-kernel" ]]; then
	start_test "only on another kernel"
	check_result ""
fi

start_test "a patch loads and unloads"
load_lp test_klp_livepatch
disable_lp test_klp_livepatch
unload_lp test_klp_livepatch
check_result "% insmod test_modules/test_klp_livepatch.ko
livepatch: enabling patch 'test_klp_livepatch'
livepatch: 'test_klp_livepatch': initializing patching transition
livepatch: 'test_klp_livepatch': starting patching transition
livepatch: 'test_klp_livepatch': completing patching transition
livepatch: 'test_klp_livepatch': patching complete
% echo 0 > /sys/kernel/livepatch/test_klp_livepatch/enabled
livepatch: 'test_klp_livepatch': initializing unpatching transition
livepatch: 'test_klp_livepatch': starting unpatching transition
livepatch: 'test_klp_livepatch': completing unpatching transition
livepatch: 'test_klp_livepatch': unpatching complete
% rmmod test_klp_livepatch"

exit 0
