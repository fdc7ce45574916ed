#!/usr/bin/env bash
# Two `modelwarden serve` instances sharing one PostgreSQL state database and one log root,
# behind one port, with demo traffic, one SOP rollback and one report that both instances agree on.
#
# Usage: scripts/cluster-demo.sh            (KEEP=1 keeps the working directory for a look)
# Needs: Debian's postgresql package (binaries in /usr/lib/postgresql/15/bin, or set PG_BIN),
#        modelwarden installed with the postgres extra (MODELWARDEN=path/to/modelwarden to choose).
# Everything runs on 127.0.0.1 ports chosen at random, in a temporary directory removed at exit.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
MW=${MODELWARDEN:-$(command -v modelwarden || true)}
PY=${PYTHON:-$(dirname "$MW")/python}
[ -x "$PY" ] || PY=python3
[ -x "$MW" ] || { echo "cluster-demo: modelwarden is not on PATH (set MODELWARDEN=...)" >&2; exit 2; }
[ -x "$PG_BIN/initdb" ] || { echo "cluster-demo: no PostgreSQL in $PG_BIN (apt-get install postgresql, or set PG_BIN)" >&2; exit 2; }
"$MW" --help | grep -c -- --state-url >/dev/null || { echo "cluster-demo: this modelwarden has no PostgreSQL state (--state-url)" >&2; exit 2; }

W=$(mktemp -d /tmp/modelwarden-cluster.XXXXXX)
chmod 755 "$W"
PIDS=()
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  [ -f "$W/pg/data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$W/pg/data" -m fast stop >/dev/null
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

wait_http() {  # URL [seconds]
  local deadline=$((SECONDS + ${2:-60}))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "cluster-demo: $1 did not come up" >&2; tail -n 20 "$W"/*.log >&2; exit 1; }
    sleep 0.2
  done
}

# ---- PostgreSQL ----------------------------------------------------------------------------------
step "PostgreSQL on a temporary directory"
PG_PORT=$(free_port)
mkdir -p "$W/pg"
[ "$(id -u)" -eq 0 ] && chown postgres "$W/pg"   # initdb refuses to run as root
as_pg "$PG_BIN/initdb" -D "$W/pg/data" -U warden -A trust --no-sync >"$W/initdb.log"
as_pg "$PG_BIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/server.log" -w \
  -o "-p $PG_PORT -k $W/pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U warden warden
export MODELWARDEN_STATE_URL="postgresql+psycopg://warden@127.0.0.1:$PG_PORT/warden"
echo "state_url = $MODELWARDEN_STATE_URL"

# ---- shared settings ------------------------------------------------------------------------------
# Both instances: the same state database, the same secrets (the audit log's MAC key) and the same
# log root; each its own data directory, hence its own spool.
export MODELWARDEN_SECRETS="$W/secrets" MODELWARDEN_EMBEDDER=hashing NO_COLOR=1
mkdir -p "$W/log" "$W/a" "$W/b"
ln -s "$W/log" "$W/a/log"
ln -s "$W/log" "$W/b/log"
"$MW" --data "$W/a" db upgrade
mw() { "$MW" --data "$W/a" "$@"; }

# ---- model servers, two gateways, one port -------------------------------------------------------
step "Two fake models, two serve instances and a round-robin proxy"
V11=sop-assistant-v1.1 V12=sop-assistant-v1.2
GOOD=$(free_port) BAD=$(free_port) A=$(free_port) B=$(free_port) FRONT=$(free_port)
"$MW" fake-upstream --version $V11 --latency-ms 1 --port "$GOOD" >"$W/good.log" 2>&1 & PIDS+=($!)
"$MW" fake-upstream --version $V12 --latency-ms 1 --quality unsafe --port "$BAD" >"$W/bad.log" 2>&1 & PIDS+=($!)
MODELWARDEN_INSTANCE=a "$MW" --data "$W/a" serve --port "$A" --flush-interval 0.2 >"$W/a.log" 2>&1 & PIDS+=($!); PID_A=$!
MODELWARDEN_INSTANCE=b "$MW" --data "$W/b" serve --port "$B" --flush-interval 0.2 >"$W/b.log" 2>&1 & PIDS+=($!); PID_B=$!
# The proxy: each request goes to the next instance in turn; X-Served-By says which one answered.
"$PY" - "$FRONT" "127.0.0.1:$A" "127.0.0.1:$B" >"$W/proxy.log" 2>&1 <<'PROXY' & PIDS+=($!)
import http.client, itertools, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, backends = int(sys.argv[1]), sys.argv[2:]
turn, lock = itertools.cycle(range(len(backends))), threading.Lock()

class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def forward(self):
        with lock:
            i = next(turn)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        up = http.client.HTTPConnection(backends[i], timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        up.request(self.command, self.path, body=body, headers=headers)
        r = up.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("X-Served-By", "ab"[i])
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = forward

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", port), Proxy).serve_forever()
PROXY
for p in "$GOOD" "$BAD" "$A" "$B" "$FRONT"; do wait_http "http://127.0.0.1:$p/healthz" 120; done
echo "instances a=:$A b=:$B behind http://127.0.0.1:$FRONT"

step "Keys, the registry and a 5 % canary of $V12 (which answers unsafely)"
OPS=$(mw keys create --role operator --name ops --format json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["key"])')
mw registry add $V11 --endpoint "http://127.0.0.1:$GOOD" --stable --key "$OPS"
mw registry add $V12 --endpoint "http://127.0.0.1:$BAD" --key "$OPS"
mw rollout start $V12 --key "$OPS" >/dev/null
mw routes show

step "Demo traffic through the one port: Plant_B, 2000 users, one question each"
"$PY" - "http://127.0.0.1:$FRONT" "$OPS" >"$W/traffic.json" <<'TRAFFIC'
import collections, json, sys, httpx
url, key = sys.argv[1], sys.argv[2]
served = collections.Counter()
models = {}
with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}", "X-Plant-Id": "Plant_B"}) as http:
    for i in range(2000):
        user = f"plant-b-op{i}"
        r = http.post("/v1/chat/completions", json={"user": user, "messages": [{"role": "user", "content": "What PPE do I need to handle sulfuric acid?"}]})
        r.raise_for_status()
        served[(r.headers["X-Served-By"], r.json()["model"])] += 1
        models[user] = r.json()["model"]
print(json.dumps({"served": {f"{k[0]} {k[1]}": v for k, v in sorted(served.items())}, "models": models}))
TRAFFIC
"$PY" -c 'import json,sys; [print(f"  instance {k}: {v} requests") for k, v in json.load(open(sys.argv[1]))["served"].items()]' "$W/traffic.json"
"$PY" -c 'from modelwarden.server.runner import wait_for_spool as w; import sys; [w(u) for u in sys.argv[1:]]' \
  "http://127.0.0.1:$A" "http://127.0.0.1:$B"

step "The SOP engine judges the canary on what both instances logged, and rolls it back"
# Each instance's controller ticks by itself; one more tick from here acts at once if none has yet.
set +e
mw rollout tick --format json >"$W/tick.json"
set -e
mw rollout status --format json >"$W/status.json"
"$PY" - "$W/status.json" <<'STATUS'
import json, sys
r = json.load(open(sys.argv[1]))
r = r.get("rollout", r)
print(f"  rollout of {r.get('version')}: {r.get('status')}")
assert r.get("status") == "rolled_back", r
STATUS

step "Both instances now serve $V11 to the canary's users"
sleep 1.5   # routes reach every instance within a second
"$PY" - "http://127.0.0.1:$FRONT" "$OPS" "$W/traffic.json" "$V12" <<'AFTER'
import collections, json, sys, httpx
url, key, before, v12 = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))["models"], sys.argv[4]
canary = [u for u, m in before.items() if m == v12][:40]
seen = collections.Counter()
with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}", "X-Plant-Id": "Plant_B"}) as http:
    for u in canary:
        r = http.post("/v1/chat/completions", json={"user": u, "messages": [{"role": "user", "content": "Lockout steps for the mixer?"}]})
        r.raise_for_status()
        seen[(r.headers["X-Served-By"], r.json()["model"])] += 1
for (inst, model), n in sorted(seen.items()):
    print(f"  instance {inst}: {n} canary users served by {model}")
assert all(m != v12 for _, m in seen), "a canary user still reached the rolled-back version"
AFTER
mw incidents list

step "One report, the same from either instance's data directory"
# Both instances stop first (a graceful stop moves every acknowledged record into the log lake),
# so both reports read the same lake and the same state: a running controller could otherwise
# act (a tick, an alert) between the two reports and make them differ for a good reason.
kill -TERM "$PID_A" "$PID_B"
wait "$PID_A" "$PID_B" 2>/dev/null || true
WEEK=$(date -u +%G-W%V)
for i in a b; do
  "$MW" --data "$W/$i" report --week "$WEEK" --format json --out "$W/report-$i.json" >/dev/null
done
"$PY" - "$W/report-a.json" "$W/report-b.json" <<'SAME'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])


def norm(x):
    # DuckDB sums floats in parallel, so the last bits of a mean may differ from run to run.
    if isinstance(x, float):
        return float(f"{x:.12g}")
    if isinstance(x, dict):
        return {k: norm(v) for k, v in x.items()}
    if isinstance(x, list):
        return [norm(v) for v in x]
    return x


diff = sorted(
    k for k in set(a) | set(b)
    if k not in ("generated_at", "drift_trend") and norm(a.get(k)) != norm(b.get(k))
)
for k in diff:
    print(f"  {k}:\n    a: {json.dumps(a.get(k), default=str)[:1500]}\n    b: {json.dumps(b.get(k), default=str)[:1500]}")
assert not diff, f"the two instances' reports differ in {', '.join(diff)}"
sop = a["sop"]
assert any(r["status"] == "rolled_back" for r in sop["rollouts"]), sop
assert sop["incidents"] and sop["quarantined"], sop
o = a.get("overall") or {}
print(f"  week {a['week']}: {o.get('requests')} requests, safety rate {o.get('safety_rate')}, "
      f"{o.get('safety_incidents')} unsafe answers, {len(a.get('findings', []))} finding(s); "
      "identical from both instances")
print(f"  SOP: {len(sop['rollouts'])} rollout(s), {len(sop['incidents'])} incident(s), quarantined "
      + ", ".join(str(q.get("version")) for q in sop["quarantined"]))
SAME
mw audit verify
step "Done"
