#!/usr/bin/env bash
# What `make run` runs: the web server, ONE Celery worker and beat, started together and stopped
# together (Ctrl+C, TERM, or any of the three exiting stops the other two).
# The web server is waitress: its I/O loop reads each request, body included, before a worker
# thread sees it, so slow uploads cannot hold every thread and the health check keeps answering.
# HOST, PORT, THREADS, MAX_UPLOAD_MB, VENV_BIN, INSTANCE_PATH, REDIS_URL, WORKER_CONCURRENCY from
# the environment. Without REDIS_URL the worker uses the embedded folder broker
# (<instance>/broker): one process, no mingle or gossip (the folder broker has no broadcast).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${VENV_BIN:-$root/.venv/bin}"
cd "$root"
instance="${INSTANCE_PATH:-instance}"
mkdir -p "$instance"

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait || true
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "${REDIS_URL:-}" ]; then
  worker_opts=(--concurrency "${WORKER_CONCURRENCY:-1}")
else
  worker_opts=(--concurrency 1 --without-mingle --without-gossip)
fi
"$bin/celery" --app service.worker worker --loglevel INFO "${worker_opts[@]}" &
pids+=("$!")
"$bin/celery" --app service.worker beat --loglevel INFO \
  --schedule "$instance/celerybeat-schedule" &
pids+=("$!")
"$bin/waitress-serve" \
  --host="${HOST:-127.0.0.1}" --port="${PORT:-8000}" --threads="${THREADS:-8}" \
  --max-request-body-size=$(( (${MAX_UPLOAD_MB:-20} + 1) * 1048576 )) \
  --channel-timeout=60 --connection-limit=200 --ident=psc \
  --call 'service:create_app' &
pids+=("$!")

# the first of the three to exit (or a signal) ends the others
wait -n
