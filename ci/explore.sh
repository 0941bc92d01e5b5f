#!/usr/bin/env bash
# A short fixed-seed exploration (klpt explore) on x86_64 against stock 7.2
# and both reference series: random patches and operations, the kernel
# compared with the reference model after every operation. Prints each
# run's divergences and the model's coverage; fails on any divergence.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p ci-out
for k in source source:cases/hybrid/series/v1-replaceable source:cases/hybrid/series/v2-replace-set; do
	cargo run --release -p klpt -- explore --arch x86_64 --kernel "$k" --seed 7 --ops 80 \
		--artifacts ci-out/artifacts | tee -a ci-out/explore-x86_64.txt
done
# Proof that the exploration finds bugs it was not written for: two of the
# planted-bug kernels (their builds reuse the ccache of the kernels above),
# each found and shrunk to at most 8 steps. The scheduled CI job runs all.
cargo run --release -p klpt -- bench --planted cases/explore/planted/stock-state-version-strict \
	cases/explore/planted/v2-stack-order-after-replace | tee -a ci-out/explore-x86_64.txt
