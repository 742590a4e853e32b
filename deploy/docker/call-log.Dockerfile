# syntax=docker/dockerfile:1.7
# Image of the call-log (workspace package calls-call-log, module call_log, port 8081).
# Build from the repository root (the build context must be the uv workspace):
#   docker build -f deploy/docker/call-log.Dockerfile -t ghcr.io/example/calls-call-log:dev .
# Every *.Dockerfile in this directory follows the same pattern; only the block marked
# "per service" differs. Keep them in step (tests/test_deploy_manifests.py checks the pattern).

ARG PYTHON_IMAGE=python:3.11-slim
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---------------------------------------------------------------------------------------------
# builder: resolve exactly what uv.lock pins for this one package, without dev dependencies,
# into /app/.venv; workspace packages are installed as regular wheels (--no-editable), so the
# runtime stage needs the virtual environment and nothing else from the source tree.
FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# 1. Third-party dependencies only: this layer is rebuilt only when uv.lock or a pyproject.toml
#    changes. uv needs every workspace member's pyproject.toml to read the workspace.
COPY pyproject.toml uv.lock ./
COPY libs/events/pyproject.toml libs/events/
COPY libs/platform/pyproject.toml libs/platform/
COPY libs/testing/pyproject.toml libs/testing/
COPY services/api-gateway/pyproject.toml services/api-gateway/
COPY services/call-log/pyproject.toml services/call-log/
COPY services/dialer/pyproject.toml services/dialer/
COPY services/recordings/pyproject.toml services/recordings/
COPY services/webhooks/pyproject.toml services/webhooks/
COPY tools/carrier-simulator/pyproject.toml tools/carrier-simulator/
COPY tools/callsctl/pyproject.toml tools/callsctl/
# --- per service ------------------------------------------------------------------------------
ARG PACKAGE=calls-call-log
ARG PACKAGE_DIR=services/call-log
# -----------------------------------------------------------------------------------------------
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package "${PACKAGE}"

# 2. The shared libraries and this service's own source (not the other services').
COPY libs/ libs/
COPY ${PACKAGE_DIR}/ ${PACKAGE_DIR}/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "${PACKAGE}"

# ---------------------------------------------------------------------------------------------
# runtime: the same Python base image, the virtual environment (owned by root, so the service
# cannot modify its own code), and an unprivileged numeric user (Kubernetes' runAsNonRoot
# can verify a numeric UID).
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 calls \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin calls
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json
WORKDIR /app
USER 10001:10001

# --- per service ------------------------------------------------------------------------------
ENV CALL_LOG_HOST=0.0.0.0 \
    CALL_LOG_PORT=8081
EXPOSE 8081
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CALL_LOG_PORT', '8081'), timeout=2)"]
# `python -m call_log` serves; `python -m call_log migrate` applies the migrations and exits.
ENTRYPOINT ["python", "-m", "call_log"]
# -----------------------------------------------------------------------------------------------
