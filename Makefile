# The two commands a new user needs: `make up` (the whole system) and `make test` (every test).
SHELL := /bin/bash
.DEFAULT_GOAL := help
# `pip install --user` puts uv in ~/.local/bin, often not on a fresh machine's PATH; failing
# that, the uv module of the Python it was installed into. Evaluated at each use (after install).
# /usr/sbin and /sbin: rabbitmqctl, runuser and pg_ctlcluster, which the chaos suite and
# ensure-services.sh use (a login without them on PATH would skip what needs them).
export PATH := $(HOME)/.local/bin:$(PATH):/usr/sbin:/sbin
UV = $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export UV

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: install
install: ## install uv (if missing) and every dependency into .venv
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet

.PHONY: services
services: ## make sure the local PostgreSQL and RabbitMQ are running
	@scripts/ensure-services.sh

.PHONY: up
up: install services ## run the whole system (with the carrier simulator unless TWILIO_ACCOUNT_SID is set)
	@scripts/up.sh

.PHONY: promtool
promtool: ## make sure promtool is there (unpacked from Debian's prometheus package into .tools/ if missing; starts no server)
	@scripts/ensure-promtool.sh >/dev/null

.PHONY: test
test: install services promtool ## run every test (unit, integration, end to end)
	@$(UV) run pytest -q

.PHONY: unit
unit: install ## the fast lane: unit tests only (no database, broker or processes; about a minute)
	@$(UV) run pytest -q -m "not integration and not chaos"

.PHONY: members
members: install ## each workspace member synced and unit-tested on its own (an undeclared import fails)
	@scripts/members.sh

.PHONY: chaos
chaos: install services ## fault-injection suite: kills, broker and database restarts, carrier faults (docs/chaos.md)
	@$(UV) run pytest -q -m chaos tests/chaos

.PHONY: startup-race
startup-race: install services ## the start-up race of #14: dialer started RACE_DELAY=10 s after the gateway, RACE_RUNS=20 times (~7 min)
	@RACE_RUNS=$${RACE_RUNS:-20} RACE_DELAY=$${RACE_DELAY:-10} $(UV) run pytest -q -p no:randomly tests/test_e2e_startup_race.py

.PHONY: fuzz
fuzz: install services ## fuzz the gateway's served OpenAPI document at length (FUZZ_EXAMPLES=… per operation and mode, default 200: about ten minutes)
	@FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-200} $(UV) run pytest -q --timeout=1800 tests/test_e2e_fuzz_gateway.py

.PHONY: lint
lint: install promtool ## ruff, mypy (sources strict, tests relaxed), the import boundaries (import-linter), promtool on the alert rules
	@$(UV) run ruff check .
	@$(UV) run ruff format --check .
	@$(UV) run lint-imports --no-cache
	@$(UV) run mypy libs/events/src libs/platform/src libs/testing/src services/api-gateway/src services/dialer/src services/call-log/src services/recordings/src services/webhooks/src tools/carrier-simulator/src tools/callsctl/src
	@scripts/mypy-tests.sh
	@"$$(scripts/ensure-promtool.sh)" check rules deploy/monitoring/alerts.rules.yaml >/dev/null

.PHONY: manifests
manifests: install ## render every Kubernetes overlay and validate it offline (needs kubectl)
	@PYTHON="$(UV) run --quiet python" scripts/validate-manifests.sh

.PHONY: bench-history
bench-history: install services ## call-history benchmark at 1,000,000 calls (CALLS=… to change)
	@$(UV) run python bench/history_bench.py --calls $${CALLS:-1000000}

.PHONY: bench-batch
bench-batch: install services ## batch benchmark: accept 1k/10k, status at 10k, single call while 10k drain
	@$(UV) run python bench/batch_bench.py

.PHONY: bench-claim
bench-claim: install ## what one dialer claim costs with 100,000 queued calls (PENDING=… to change)
	@$(UV) run python bench/claim_bench.py --pending $${PENDING:-100000}

.PHONY: bench-load
bench-load: install services ## POST /calls beside its floor, GET /calls/{id}, GET /calls, memory, gateway profile (DURATION=30)
	@$(UV) run --with py-spy python bench/load_bench.py --duration $${DURATION:-30} --profile

.PHONY: bench-pacing
bench-pacing: install services ## dial pacing at 1 CPS for DURATION=600 s, then at 20 CPS for CPS20_DURATION=60 s
	@$(UV) run python bench/pacing_bench.py --cps 1 --duration $${DURATION:-600}
	@$(UV) run python bench/pacing_bench.py --cps 20 --duration $${CPS20_DURATION:-60} --port-base 19150

.PHONY: token
token: install ## print a development JWT (ORG=org_demo)
	@$(UV) run calls-dev-token --org $${ORG:-org_demo}

.PHONY: openapi
openapi: install ## regenerate docs/openapi.json (and docs/events/webhooks/*.schema.json) from the gateway's models
	@$(UV) run python -m gateway.openapi docs/openapi.json
	@$(UV) run python -m gateway.openapi --webhook-schemas docs/events/webhooks

.PHONY: monitoring
monitoring: install ## regenerate deploy/monitoring/prometheusrule.yaml from deploy/monitoring/alerts.rules.yaml
	@$(UV) run python scripts/render_prometheusrule.py

.PHONY: asyncapi
asyncapi: install ## regenerate docs/asyncapi.json (the event stream, AsyncAPI 3.0) from libs/events and the topology
	@$(UV) run python -m calls_platform.asyncapi docs/asyncapi.json

.PHONY: event-schemas
event-schemas: install ## regenerate docs/events/*.schema.json from libs/events
	@$(UV) run python -m calls_events.schema docs/events
