#!/usr/bin/env bash
# Run the whole system in the foreground (Ctrl-C stops it): every service, and the carrier
# simulator when no Twilio credentials are configured.
set -euo pipefail
cd "$(dirname "$0")/.."

export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/calls}"
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
export GATEWAY_PORT="${GATEWAY_PORT:-8080}"
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://127.0.0.1:${GATEWAY_PORT}}"
export PYTHONUNBUFFERED=1
# the outbox relay runs as a process of its own (the Procfile's `relay`, on :8085)
export RELAY_IN_PROCESS="${RELAY_IN_PROCESS:-false}"
export RELAY_PORT="${RELAY_PORT:-8085}"
# webhook endpoints on this machine (http://127.0.0.1:…) are allowed locally, never in production
export WEBHOOKS_ALLOW_PRIVATE="${WEBHOOKS_ALLOW_PRIVATE:-true}"

# the Makefile exports UV (uv on PATH, or `python3 -m uv`)
UV="${UV:-uv}"

procfile=deploy/local/Procfile
if [[ -z "${TWILIO_ACCOUNT_SID:-}" ]]; then
  echo "TWILIO_ACCOUNT_SID is not set: dialing the local carrier simulator on :8090"
  export SIM_PORT="${SIM_PORT:-8090}"
  # the simulator's own default credentials (carrier_sim.config), written there only
  credentials="$($UV run python -c 'from carrier_sim import config; print(config.DEFAULT_ACCOUNT_SID, config.DEFAULT_AUTH_TOKEN)')"
  read -r TWILIO_ACCOUNT_SID TWILIO_AUTH_TOKEN <<<"$credentials"
  export TWILIO_ACCOUNT_SID TWILIO_AUTH_TOKEN
  export TWILIO_API_URL="http://127.0.0.1:${SIM_PORT}"
  export SIM_ACCOUNT_SID="$TWILIO_ACCOUNT_SID" SIM_AUTH_TOKEN="$TWILIO_AUTH_TOKEN"
  procfile=deploy/local/Procfile.simulator
fi

$UV run python scripts/create_database.py "$DATABASE_URL"
$UV run python scripts/migrate.py
exec $UV run honcho --procfile "$procfile" --app-root . start
