#!/bin/bash
# The kernel oopses in the second scenario (a NULL store in a module's
# init): that scenario is a kernel crash, the third never runs.
. $(dirname $0)/functions.sh
setup_config

start_test "before the oops"
check_result ""

start_test "a module oopses"
insmod test_modules/klpt_oops.ko
check_result ""

start_test "after the oops"
check_result ""
