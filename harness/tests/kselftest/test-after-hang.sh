#!/bin/bash
# Runs in a fresh guest after the hang.
. $(dirname $0)/functions.sh
setup_config

start_test "another fresh guest"
check_result ""
