#!/usr/bin/env bash
# Each workspace member on its own: `uv sync --package <member>` into an environment of its
# own (nothing but what the member and its dev group declare), then import every module of
# its package and run its unit tests (no database, no broker) there. An import the member
# does not declare fails here, even when another member happens to bring it into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
# UV may be a command of several words ("python3 -m uv" when uv is not on PATH)
read -ra UV <<<"${UV:-uv}"
ROOT="${MEMBERS_ENV_DIR:-${TMPDIR:-/tmp}/calls-members}"
# member, its folder, its package
MEMBERS=(
  "calls-events libs/events calls_events"
  "calls-platform libs/platform calls_platform"
  "calls-testing libs/testing calls_testing"
  "calls-gateway services/api-gateway gateway"
  "calls-call-log services/call-log call_log"
  "calls-dialer services/dialer dialer"
  "calls-recordings services/recordings recordings"
  "calls-webhooks services/webhooks webhooks"
  "carrier-sim tools/carrier-simulator carrier_sim"
  "callsctl tools/callsctl callsctl"
)
# unit tests only, and nowhere to find a server: a test that needs one fails instead of using it
export TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:1/postgres
export TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:1/
failed=()
for entry in "${MEMBERS[@]}"; do
  read -r member folder package <<<"$entry"
  export UV_PROJECT_ENVIRONMENT="$ROOT/$member"
  echo "== $member"
  if ! "${UV[@]}" sync --frozen --quiet --package "$member"; then
    failed+=("$member (sync)")
    continue
  fi
  run=("${UV[@]}" run --frozen --no-sync --package "$member")
  if ! "${run[@]}" python - "$package" <<'PY'
import importlib, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
    importlib.import_module(module.name)
PY
  then
    failed+=("$member (imports)")
    continue
  fi
  if [[ -d "$folder/tests" ]]; then
    status=0
    "${run[@]}" pytest -q -p no:cacheprovider -m "not integration and not chaos" "$folder/tests" \
      || status=$?
    # 5: every test of the member needs a server (none is a unit test)
    if [[ $status -ne 0 && $status -ne 5 ]]; then
      failed+=("$member (tests)")
    fi
  fi
done
if ((${#failed[@]})); then
  echo "members that fail on their own: ${failed[*]}" >&2
  exit 1
fi
echo "every member syncs, imports and passes its unit tests on its own"
