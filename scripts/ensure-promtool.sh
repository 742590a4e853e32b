#!/usr/bin/env bash
# Make sure `promtool` (Prometheus' rule checker and rule unit-test runner) is available, and
# print its path. Uses one on PATH (or $PROMTOOL) if there is one; otherwise unpacks Debian's
# `prometheus` package into a temporary folder WITHOUT installing it: `apt-get download` plus
# `dpkg -x` run no maintainer scripts, so no Prometheus server is started or enabled;
# only the promtool binary is kept, in .tools/bin.
#
#   scripts/ensure-promtool.sh          # prints e.g. /repo/.tools/bin/promtool
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${PROMTOOL:-}" && -x "${PROMTOOL}" ]]; then
  echo "$PROMTOOL"
  exit 0
fi
if command -v promtool >/dev/null 2>&1; then
  command -v promtool
  exit 0
fi
local_promtool="$PWD/.tools/bin/promtool"
if [[ -x "$local_promtool" ]]; then
  echo "$local_promtool"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
  echo "ensure-promtool: promtool not found and no apt-get/dpkg to fetch it; install Prometheus' promtool and put it on PATH (or set PROMTOOL)" >&2
  exit 1
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
download() { (cd "$workdir" && apt-get download prometheus >/dev/null 2>&1); }
if ! download; then
  # the package lists may be missing or stale on a fresh machine
  apt-get update >/dev/null 2>&1 || true
  if ! download; then
    echo "ensure-promtool: could not download Debian's prometheus package (apt-get download prometheus)" >&2
    exit 1
  fi
fi
dpkg -x "$workdir"/prometheus_*.deb "$workdir/unpacked"
mkdir -p .tools/bin
cp "$workdir/unpacked/usr/bin/promtool" "$local_promtool"
"$local_promtool" --version >/dev/null
echo "$local_promtool"
