#!/usr/bin/env bash
# The CI job graph of ci/gitlab-ci.yml and ci/github-workflow.yml, run here
# with parallel processes on a small subset: one architecture, the stock
# source kernel and one series, 3 shards, a handful of cases.
#
#   kernel jobs   `klpt kernel build --export`, both kernels at once
#   test jobs     3 shards at once (`--partition hash:K/3 --results`), each
#                 with its own artifacts dir as on separate CI machines, and
#                 an unsharded run of the same trials beside them
#   report job    `klpt report merge`, validated by ci/validate_reports.py
#                 (kcidb-io, the kernel's KTAP parser, junitparser) with the
#                 trial count from `--list`; the merged KCIDB report must
#                 equal the unsharded one in every id, path and status
#
# Any failed job fails the simulation (after the report job, whose reports
# are still written). Reports are kept in ci-out/simulate/; the scratch dir
# goes. Kernels come from klpt's cache when built already.
#   KLPT_SIM_ARCH (x86_64), KLPT_SIM_SERIES (cases/hybrid/series/v2-replace-set)
set -euo pipefail
cd "$(dirname "$0")/.."

arch="${KLPT_SIM_ARCH:-x86_64}"
series="${KLPT_SIM_SERIES:-cases/hybrid/series/v2-replace-set}"
shards=3
cases=(cases/stock/basic-enable-disable.yaml cases/stock/atomic-replace.yaml
	cases/stock/cumulative-upgrade.yaml cases/hybrid/v2-conflict-sympos.yaml
	cases/hybrid/same-function-two-kinds.yaml)
cache="${KLPT_CACHE:-$HOME/.cache/klpt}"
out=ci-out/simulate
# Every job of one pipeline reports under one run id.
export KLPT_RUN_ID="simulate-$(date -u +%Y%m%dT%H%M%S)-$$"

work="$(mktemp -d "${TMPDIR:-/tmp}/klpt-simulate.XXXXXX")"
declare -A job_name=()
failed=()
cleanup() {
	# klpt stops its guests on SIGTERM; then the scratch dir goes.
	for pid in "${!job_name[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# job NAME CMD...: CMD in the background (klpt itself, so a signal reaches
# it), its output in NAME.log.
job() {
	local name="$1"
	shift
	"$@" >"$work/$name.log" 2>&1 &
	job_name[$!]="$name"
	echo "  started $name"
}

# Waits for every job; a failed one is shown and remembered.
wait_jobs() {
	local pid
	for pid in "${!job_name[@]}"; do
		if wait "$pid"; then
			echo "  ok      ${job_name[$pid]}"
		else
			echo "  FAILED  ${job_name[$pid]} (exit $?), last lines of its log:" >&2
			tail -n 25 "$work/${job_name[$pid]}.log" | sed 's/^/    /' >&2
			failed+=("${job_name[$pid]}")
		fi
		unset "job_name[$pid]"
	done
}

stage() { echo "== $*"; }

stage "validators' self-test and klpt"
py="$(ci/python-env.sh)"
"$py" ci/test_validate_reports.py 2>&1 | tail -n 1
cargo build --release -p klpt 2>&1 | tail -n 1
klpt="$PWD/target/release/klpt"

stage "kernel jobs"
job "kernel-$arch-stock" "$klpt" kernel build --arch "$arch" --export "$work/kernel-$arch-stock.tar.zst"
job "kernel-$arch-series" "$klpt" kernel build --arch "$arch" --series "$series" --export "$work/kernel-$arch-series.tar.zst"
wait_jobs
if [ "${#failed[@]}" -gt 0 ]; then
	echo "simulate: kernel jobs failed: ${failed[*]}" >&2
	exit 1
fi
# The kernel tree's own KTAP parser, as the CI kernel job hands it on.
mkdir -p "$work/kunit/tools/testing/kunit"
cp "$cache"/src/linux-source-*/tree/tools/testing/kunit/kunit_{parser,printer}.py "$work/kunit/tools/testing/kunit/"

kernels=(--kernel "$work/kernel-$arch-stock.tar.zst" --kernel "$work/kernel-$arch-series.tar.zst")
trials="$("$klpt" run "${cases[@]}" --arch "$arch" "${kernels[@]}" --list | grep -c ': test$')"

stage "test jobs: $trials trials, $shards shards, and unsharded"
# Shards share two cores here, not a machine each: one guest at a time.
for k in $(seq 1 "$shards"); do
	job "test-$arch-$k" "$klpt" run "${cases[@]}" --arch "$arch" "${kernels[@]}" --test-threads 1 \
		--partition "hash:$k/$shards" --results "$work/results-$arch-$k.json" --artifacts "$work/artifacts-$k"
done
job "test-$arch-unsharded" "$klpt" run "${cases[@]}" --arch "$arch" "${kernels[@]}" --test-threads 1 \
	--results "$work/unsharded.json" --artifacts "$work/artifacts-unsharded"
wait_jobs

stage "report job"
mkdir -p "$out"
merge_status=0
"$klpt" report merge "$work"/results-"$arch"-*.json --ktap "$out/klpt.ktap" --junit "$out/klpt.junit.xml" \
	--kcidb "$out/klpt.kcidb.json" --matrix "$out/klpt-matrix.json" || merge_status=$?
[ "$merge_status" -eq 0 ] || failed+=("report merge (exit $merge_status)")
"$py" ci/validate_reports.py --kernel-tree "$work/kunit" --expect-tests "$trials" \
	--kcidb "$out/klpt.kcidb.json" --ktap "$out/klpt.ktap" --junit "$out/klpt.junit.xml" || failed+=("validate_reports")
"$klpt" report merge "$work/unsharded.json" --kcidb "$work/unsharded.kcidb.json" || failed+=("report merge (unsharded)")
"$py" - "$out/klpt.kcidb.json" "$work/unsharded.kcidb.json" <<'EOF' || failed+=("merged = unsharded")
import json, sys
def ids(path):
    d = json.load(open(path))
    return {k: sorted((o["id"], o.get("path"), o.get("status"), o.get("checkout_id"), o.get("build_id"))
                      for o in d.get(k, [])) for k in ("checkouts", "builds", "tests", "issues", "incidents")}
merged, whole = ids(sys.argv[1]), ids(sys.argv[2])
for k in merged:
    if merged[k] != whole[k]:
        sys.exit(f"merged and unsharded KCIDB {k} differ:\n  merged    {merged[k][:3]}\n  unsharded {whole[k][:3]}")
print("merged KCIDB report = unsharded: " + ", ".join(f"{len(v)} {k}" for k, v in merged.items()))
EOF

if [ "${#failed[@]}" -gt 0 ]; then
	echo "simulate: failed: ${failed[*]} (reports in $out)" >&2
	exit 1
fi
echo "simulate: all jobs passed; reports in $out"
