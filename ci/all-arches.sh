#!/usr/bin/env bash
# The stock suite on all four architectures, on kernels built from Debian's
# kernel source (the Debian kernels of arm64, s390x and ppc64le lack
# CONFIG_LIVEPATCH). Builds are cached in klpt's cache and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p ci-out
cargo run --release -p klpt -- run cases/stock --arch all --kernel source \
	--ktap ci-out/stock-all-arches.ktap --junit ci-out/stock-all-arches.junit.xml \
	--artifacts ci-out/artifacts
