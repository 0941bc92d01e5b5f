#!/usr/bin/env bash
# Runs the two commands at the top of README.md, verbatim, so CI can never
# drift from what a new user is told to type.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t cmds < <(awk '/^```sh$/{f=1; next} /^```$/{if (f) exit} f' README.md)
if [ "${#cmds[@]}" -ne 2 ]; then
	echo "README.md must start with exactly two commands in its first sh block (found ${#cmds[@]})" >&2
	exit 1
fi
for c in "${cmds[@]}"; do
	echo "+ $c"
	bash -c "$c"
done
