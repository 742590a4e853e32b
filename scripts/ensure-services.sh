#!/usr/bin/env bash
# Start the local PostgreSQL and RabbitMQ if they are installed here and not running.
# Skipped when DATABASE_URL / AMQP_URL point elsewhere (then those servers are yours to run).
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  fi
fi
if ! port_open 5672; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "starting RabbitMQ"
    rabbitmq-server -detached
  fi
fi
for i in $(seq 1 60); do
  if port_open 5432 && port_open 5672; then exit 0; fi
  sleep 1
done
port_open 5432 || echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2
port_open 5672 || echo "RabbitMQ is not reachable on 127.0.0.1:5672" >&2
exit 1
