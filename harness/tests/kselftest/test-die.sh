#!/bin/bash
# functions.sh dies before check_result: a module that is not there.
. $(dirname $0)/functions.sh
setup_config

start_test "a module that was never built"
load_lp test_klp_not_built
check_result ""
