#!/usr/bin/env bash
# A private Python venv for CI's report validators (ci/validate_reports.py):
# kcidb-io (the Kernel CI schema) and junitparser, at the versions pinned in
# ci/requirements.txt, in ${KLPT_CACHE:-~/.cache/klpt}/venv. Nothing is
# installed on the host. Prints the venv's python; reuses the venv while the
# pins are unchanged, rebuilds it (in a scratch dir, moved into place) when
# they change.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
reqs="$here/requirements.txt"
cache="${KLPT_CACHE:-$HOME/.cache/klpt}"
venv="$cache/venv"
host_python="${KLPT_PYTHON:-python3}"

want="$(sha256sum "$reqs" | cut -c-64)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.klpt-requirements" 2>/dev/null)" = "$want" ]; then
	echo "$venv/bin/python"
	exit 0
fi

if ! command -v "$host_python" >/dev/null; then
	echo "python-env: no $host_python on PATH (set KLPT_PYTHON to a Python 3.9+ interpreter)" >&2
	exit 1
fi
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.venv-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
if ! "$host_python" -m venv "$tmp/venv" >&2; then
	echo "python-env: \`$host_python -m venv\` failed: Debian's python3 needs the python3-venv package (apt-get install python3-venv)" >&2
	exit 1
fi
# `python -m pip`, never the venv's bin/ scripts: their #! lines name the
# scratch path, and the venv is moved into place below.
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs" >&2
echo "$want" >"$tmp/venv/.klpt-requirements"
rm -rf "$venv"
# Another run may have won the race: its venv, from the same pins, will do.
mv -T "$tmp/venv" "$venv" 2>/dev/null || [ "$(cat "$venv/.klpt-requirements" 2>/dev/null)" = "$want" ]
echo "$venv/bin/python"
