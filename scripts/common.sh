# Shared by the scripts in this folder: paths, ports and small helpers. Source it, don't run it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${MAILFOLD_STATE_DIR:-$ROOT/.mailfold}"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

KAFKA_PORT="${MAILFOLD_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${MAILFOLD_KAFKA_CONTROLLER_PORT:-19093}"
PG_PORT="${MAILFOLD_PG_PORT:-15432}"
PG_BIN="${MAILFOLD_PG_BIN:-/usr/lib/postgresql/15/bin}"

export MAILFOLD_KAFKA_BOOTSTRAP="${MAILFOLD_KAFKA_BOOTSTRAP:-127.0.0.1:$KAFKA_PORT}"
export MAILFOLD_DATABASE_URL="${MAILFOLD_DATABASE_URL:-postgresql://mailfold@127.0.0.1:$PG_PORT/mailfold}"

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# PostgreSQL refuses to run as root: when we are root, run its binaries as the postgres user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
