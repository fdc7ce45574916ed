#!/usr/bin/env bash
# Soak run: gateway (+ two fake upstreams), ingest and the rollout controller together on
# 127.0.0.1 for MINUTES (default 30), recording memory, open files and latency over time to
# docs/soak-<MINUTES>min.csv and its summary to docs/reliability.md.
#   scripts/soak.sh [MINUTES] [--sample-s S] [--chat-rps R] [--ingest-rps R] [--batch N]
#                   [--out FILE] [--data DIR] [--no-write]
# (see scripts/soak.py). Exit 1 if an acknowledged ingest record is missing at the end.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
exec "$python" "$here/soak.py" "$@"
