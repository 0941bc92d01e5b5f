#!/bin/bash
# Runs in a fresh guest after the oops.
. $(dirname $0)/functions.sh
setup_config

start_test "a fresh guest"
check_result ""
