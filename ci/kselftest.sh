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
	--artifacts ci-out/artifacts
cargo run --release -p klpt -- selftests --arch x86_64 --kernel source \
	--ktap ci-out/kselftest-tree.ktap --junit ci-out/kselftest-tree.junit.xml \
	--artifacts ci-out/artifacts
