#!/usr/bin/env bash
# Serves the app with waitress (what `make run` runs): its I/O loop reads each request, body
# included, before a worker thread sees it, so slow uploads cannot hold every thread and the
# health check keeps answering. HOST, PORT, THREADS, MAX_UPLOAD_MB, VENV_BIN from the environment.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${VENV_BIN:-$root/.venv/bin}"
cd "$root"
exec "$bin/waitress-serve" \
  --host="${HOST:-127.0.0.1}" --port="${PORT:-8000}" --threads="${THREADS:-8}" \
  --max-request-body-size=$(( (${MAX_UPLOAD_MB:-20} + 1) * 1048576 )) \
  --channel-timeout=60 --connection-limit=200 --ident=psc \
  --call 'service:create_app'
