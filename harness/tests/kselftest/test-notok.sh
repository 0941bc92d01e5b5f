#!/bin/bash
# The kernel log holds a line the expected transcript lacks: `not ok` and a
# diff, then die; the second scenario never runs.
. $(dirname $0)/functions.sh
setup_config

start_test "an unexpected livepatch line"
log "livepatch: an intruder"
check_result ""

start_test "never reached"
check_result ""
