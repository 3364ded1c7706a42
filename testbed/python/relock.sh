#!/usr/bin/env bash
# Re-resolve python/<name>.in into python/<name>.lock.txt (full pip freeze) in a scratch venv.
# Usage: python/relock.sh localstack|moto
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
name="${1:?usage: relock.sh localstack|moto}"
src="$TESTBED_ROOT/python/$name.in"
[[ -r "$src" ]] || die "no $src"
py="$(find_python)" || die "no Python 3.12/3.13 found (set STACKPILOT_PYTHON)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$py" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --disable-pip-version-check -q -r "$src"
{
  echo "# Full lock of python/$name.in (pip freeze, $("$py" -V)). Regenerate with python/relock.sh."
  "$tmp/venv/bin/python" -m pip freeze --all --exclude pip --exclude setuptools
} >"$TESTBED_ROOT/python/$name.lock.txt"
log "wrote python/$name.lock.txt"
