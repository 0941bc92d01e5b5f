#!/usr/bin/env bash
# The stock and hybrid suites against stock 7.2 and both reference series on
# x86_64 (klpt matrix). The second and third kernels reuse the first's build
# cache (ccache over identical relative paths).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p ci-out
cargo run --release -p klpt -- matrix --arch x86_64 --json ci-out/matrix-x86_64.json --artifacts ci-out/artifacts | tee ci-out/matrix-x86_64.md
