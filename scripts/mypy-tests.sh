#!/usr/bin/env bash
# mypy over the tests, one folder at a time (each has a conftest.py of its own, and mypy knows
# one module by that name per run), with the relaxations encode/httpx uses for its tests:
# helpers and fixtures need not be annotated, but what is annotated is checked, and so are the
# bodies of functions that are not. The sources are checked strictly by `make lint` before.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
UV="${UV:-uv}"
relaxed=(--allow-untyped-defs --allow-incomplete-defs --allow-untyped-calls --check-untyped-defs
  --no-warn-return-any)
status=0
for folder in libs/*/tests services/*/tests tools/*/tests tests; do
  [[ -d "$folder" ]] || continue
  if grep -rqs "^ *from conftest import" "$folder"; then
    # from the folder itself: its conftest is then the module `conftest` the tests import
    (cd "$folder" && $UV run mypy --config-file "$root/pyproject.toml" "${relaxed[@]}" .) \
      | sed "s|^|$folder/|; s|^$folder/Success:|$folder: success:|" || status=1
  else  # the tests import their conftest by its package path (tests.conftest)
    $UV run mypy "${relaxed[@]}" "$folder" | sed "s|^Success:|$folder: success:|" || status=1
  fi
done
exit $status
