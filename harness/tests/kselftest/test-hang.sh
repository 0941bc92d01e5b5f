#!/bin/bash
# The only CPU spins with interrupts off: the guest stops answering.
. $(dirname $0)/functions.sh
setup_config

start_test "a module hangs the kernel"
insmod test_modules/klpt_hang.ko
check_result ""
