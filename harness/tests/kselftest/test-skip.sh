#!/bin/bash
# Skips (exit 4) before its first scenario, as test-kprobe.sh does
# without CONFIG_KPROBES_ON_FTRACE.
. $(dirname $0)/functions.sh
skip "nothing to test on this kernel"

setup_config
start_test "skipped with the script"
check_result ""
