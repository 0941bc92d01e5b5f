#!/bin/bash
# Runs in a fresh guest after the lost one.
. $(dirname $0)/functions.sh
setup_config

start_test "a guest after the lost ones"
check_result ""
