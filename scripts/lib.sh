# shellcheck shell=bash
# Shared by scripts/demo and scripts/test. Sourced, not executed.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACKPILOT_CACHE="${STACKPILOT_CACHE:-$HOME/.cache/stackpilot}"

say() { printf '\n==> %s\n' "$*" >&2; }
fail() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Tools the machine must have; everything else is built and cached by the scripts.
need_tools() {
  local tool
  for tool in cargo rustc go kubectl openssl; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (see README: prerequisites)"
  done
}

# Cargo builds go to a cache outside the repo, one per toolchain version, so a fresh
# clone reuses earlier builds and a toolchain upgrade starts clean.
use_cargo_cache() {
  local key
  key="$(rustc -V | sha256sum | cut -c1-12)"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STACKPILOT_CACHE/cargo-target-$key}"
  export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
}

# Prints the tail of every log in a directory (for a failed run).
show_logs() { # <dir>
  local f
  for f in "$1"/*.log; do
    [[ -s "$f" ]] || continue
    printf '\n----- %s (last 40 lines) -----\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
}
