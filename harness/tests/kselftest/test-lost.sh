#!/bin/bash
# The guest's SSH server dies in the second scenario, with no crash: klpt
# has lost the guest, reruns the script once in a fresh guest, where it
# dies again.
. $(dirname $0)/functions.sh
setup_config

start_test "before the loss"
check_result ""

start_test "the ssh server dies"
killall -9 dropbear
sleep 30
check_result ""
