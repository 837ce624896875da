# What the demo's domain parts share, sourced by scripts/demo: starting a sluice-worker and
# waiting until it is ready, live progress while results arrive, latency quantiles from the
# worker's /metrics, and the one summary table printed at the end (one row per domain).

DEMO_WORKER_PIDS=()
# The binaries the demo runs (scripts/demo builds them there).
DEMO_BIN=${SLUICE_DEMO_BIN:-./build/bin}

# demo_topic TOPIC PARTITIONS: creates the topic unless it exists. It exists before its worker
# subscribes, so that the worker's first fetch finds it.
demo_topic() {
  "$DEMO_BIN/sluice" topic create --brokers "$SLUICE_KAFKA_BROKERS" --topic "$1" \
    --partitions "$2" --if-missing > /dev/null || die "cannot create the topic $1"
}

# demo_replay ARGS...: `sluice replay ARGS` into the demo's broker, its summary indented.
demo_replay() {
  SLUICE_NO_PROGRESS=1 "$DEMO_BIN/sluice" replay --brokers "$SLUICE_KAFKA_BROKERS" "$@" \
    | sed 's/^/  replay: /'
}

# demo_labels FILE COLUMN TABLE: loads a data file's 0/1 label column into public.TABLE
# (event_id text, label int), event ids "<file name>:<row>" as `sluice replay` sends them. The
# labels stay in the data file and reach the summary through this table, never through Kafka.
demo_labels() {
  local file=$1 column=$2 table=$3 csv=$SLUICE_RUN_DIR/$3.csv
  python3 - "$file" "$column" > "$csv" <<'PY' || die "cannot read the column $column of $file"
import csv, os, sys
name = os.path.basename(sys.argv[1])
with open(sys.argv[1], newline="", encoding="utf-8-sig") as f:
    r = csv.reader(f)
    col = next(r).index(sys.argv[2])
    for i, row in enumerate(r):
        print(f"{name}:{i},{int(float(row[col]))}")
PY
  psql "$SLUICE_PG_DSN" -X -q -v ON_ERROR_STOP=1 \
    -c "SET client_min_messages = warning; DROP TABLE IF EXISTS public.$table;
        CREATE TABLE public.$table (event_id text PRIMARY KEY, label int);" \
    -c "\\copy public.$table FROM '$csv' WITH (FORMAT csv)" || die "cannot load $csv into public.$table"
}

# demo_worker_start NAME ARGS...: starts `sluice-worker ARGS...` (log $SLUICE_RUN_DIR/worker-NAME.log)
# on an ephemeral HTTP port and waits until /readyz says ready (model loaded, partitions
# assigned, PostgreSQL connected). Sets DEMO_PID and DEMO_PORT.
demo_worker_start() {
  local name=$1 log=$SLUICE_RUN_DIR/worker-$1.log i
  shift
  "$DEMO_BIN/sluice-worker" --kafka-brokers="$SLUICE_KAFKA_BROKERS" --pg-dsn="$SLUICE_PG_DSN" \
    --http-address=127.0.0.1 --http-port=0 --log-level=info "$@" > "$log" 2>&1 &
  DEMO_PID=$!
  DEMO_WORKER_PIDS+=("$DEMO_PID")
  DEMO_PORT=""
  for i in $(seq 1 100); do
    DEMO_PORT=$(sed -n 's/.*msg="worker started".*http_port=\([0-9]*\).*/\1/p' "$log" | head -1)
    [ -n "$DEMO_PORT" ] && break
    kill -0 "$DEMO_PID" 2>/dev/null || { cat "$log" >&2; die "sluice-worker ($name) exited at start"; }
    sleep 0.1
  done
  [ -n "$DEMO_PORT" ] || { cat "$log" >&2; die "sluice-worker ($name) did not start within 10 s"; }
  for i in $(seq 1 300); do
    demo_http_get "http://127.0.0.1:$DEMO_PORT/readyz" | grep -q '^ready' && return 0
    kill -0 "$DEMO_PID" 2>/dev/null || { tail -20 "$log" >&2; die "sluice-worker ($name) exited"; }
    sleep 0.1
  done
  tail -20 "$log" >&2
  die "sluice-worker ($name) not ready after 30 s (its log: $log)"
}

# Stops every worker demo_worker_start started (SIGTERM: they finish their batch and leave).
demo_workers_stop() {
  local p i
  for p in "${DEMO_WORKER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${DEMO_WORKER_PIDS[@]}"; do
    for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  DEMO_WORKER_PIDS=()
}

demo_http_get() { # URL -> body on stdout; nothing on failure
  python3 -c 'import sys, urllib.request
try: sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
except Exception: pass' "$1"
}

# demo_wait_count LABEL N LOG SQL: polls SQL (a count) until it reaches N, showing live
# progress (one rewritten line on a terminal, a line every 5 s otherwise). Fails when the
# count stops moving for 30 s, with the end of the worker's LOG.
demo_wait_count() {
  local label=$1 n=$2 log=$3 sql=$4 got=0 last=-1 still=0 ticks=0
  local psql=(psql "$SLUICE_PG_DSN" -X -q -At)
  while :; do
    got=$("${psql[@]}" -c "$sql" 2>/dev/null || echo 0)
    if [ -t 2 ]; then
      printf '\r  %-10s %7d / %d stored' "$label" "$got" "$n" >&2
    elif [ $((ticks % 50)) = 0 ]; then
      printf '  %-10s %7d / %d stored\n' "$label" "$got" "$n" >&2
    fi
    ticks=$((ticks + 1))
    [ "$got" -ge "$n" ] && break
    if [ "$got" = "$last" ]; then still=$((still + 1)); else still=0; fi
    if [ "$still" -ge 300 ]; then
      [ -t 2 ] && echo >&2
      tail -20 "$log" >&2
      die "$label: results stopped at $got of $n for 30 s"
    fi
    last=$got
    sleep 0.1
  done
  if [ -t 2 ]; then printf '\r  %-10s %7d / %d stored\n' "$label" "$got" "$n" >&2
  elif [ $(((ticks - 1) % 50)) != 0 ]; then printf '  %-10s %7d / %d stored\n' "$label" "$got" "$n" >&2
  fi
  return 0
}

# demo_quantiles PORT HISTOGRAM: "p50 p99" of a histogram from the worker's /metrics buckets
# (linear inside the bucket, as Prometheus' histogram_quantile), in the histogram's unit.
demo_quantiles() {
  demo_http_get "http://127.0.0.1:$1/metrics" | python3 -c '
import math, re, sys
name, text = sys.argv[1], sys.stdin.read()
b = [(math.inf if le == "+Inf" else float(le), int(n))
     for le, n in re.findall(r"^" + name + r"_bucket\{le=\"([^\"]+)\"\} (\d+)", text, re.M)]
b.sort()
if not b or b[-1][1] == 0:
    print("nan nan"); sys.exit(0)
total = b[-1][1]
def q(f):
    lo, prev = 0.0, 0
    for ub, n in b:
        if n >= f * total:
            return lo if math.isinf(ub) else lo + (ub - lo) * (f * total - prev) / max(1, n - prev)
        lo, prev = ub, n
    return lo
print(q(0.5), q(0.99))' "$2"
}

# demo_summary_add DOMAIN EVENTS ALERTS PRECISION RECALL WHAT EVENTS_PER_S P50_MS P99_MS:
# one row of the final table (precision/recall as fractions, or "-" when not applicable;
# WHAT says what they measure, e.g. "block vs Class").
demo_summary_add() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$SLUICE_RUN_DIR/demo-summary.tsv"
}

demo_summary_print() {
  [ -s "$SLUICE_RUN_DIR/demo-summary.tsv" ] || return 0
  python3 - "$SLUICE_RUN_DIR/demo-summary.tsv" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
def pct(v): return "-" if v in ("-", "", "nan") else f"{100 * float(v):.1f} %"
def num(v, fmt): return "-" if v in ("-", "", "nan") else format(float(v), fmt)
head = ("domain", "events", "alerts", "precision", "recall", "against", "events/s", "p50 ms", "p99 ms")
out = [head] + [(r[0], r[1], r[2], pct(r[3]), pct(r[4]), r[5], num(r[6], ",.0f"),
                 num(r[7], ".1f"), num(r[8], ".1f")) for r in rows]
w = [max(len(r[i]) for r in out) for i in range(len(head))]
print()
for i, r in enumerate(out):
    print("  " + "  ".join(c.ljust(w[j]) if j in (0, 5) else c.rjust(w[j]) for j, c in enumerate(r)))
    if i == 0: print("  " + "  ".join("-" * x for x in w))
PY
}
