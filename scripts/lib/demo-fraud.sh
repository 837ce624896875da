# The fraud part of the demo, sourced by scripts/demo after the servers are up: a
# sluice-worker with the shipped fraud model consumes `sluice replay` of the public card data,
# then the results in PostgreSQL are summarised against the data's labels.

demo_fraud() {
  local data=$SLUICE_ROOT/../shared/data/fraud/creditcard_train.csv
  local model=$SLUICE_ROOT/models/fraud.safetensors
  local rate=${SLUICE_DEMO_RATE:-4000}
  local log=$SLUICE_RUN_DIR/worker-fraud.log
  local psql=(psql "$SLUICE_PG_DSN" -X -q -v ON_ERROR_STOP=1 -At)
  [ -f "$data" ] || die "the fraud data set is missing: $data (../shared/data beside the repository)"
  [ -f "$model" ] || die "the fraud model is missing: $model (models/reproduce fraud rebuilds it)"
  local n_rows
  n_rows=$(( $(wc -l < "$data") - 1 ))

  # The topic exists before the worker subscribes, so that its first fetch finds it.
  ./build/bin/sluice topic create --brokers "$SLUICE_KAFKA_BROKERS" --topic sluice.fraud.events \
    --partitions 4 --if-missing > /dev/null || die "cannot create the topic sluice.fraud.events"
  say "2/2 fraud desk: sluice-worker with models/fraud.safetensors, $n_rows card transactions replayed at $rate/s"
  ./build/bin/sluice-worker --kafka-brokers="$SLUICE_KAFKA_BROKERS" --pg-dsn="$SLUICE_PG_DSN" \
    --model-path="$model" --http-address=127.0.0.1 --http-port=0 --log-level=info \
    > "$log" 2>&1 &
  DEMO_WORKER_PID=$!
  local port="" i
  for i in $(seq 1 100); do
    port=$(sed -n 's/.*msg="worker started".*http_port=\([0-9]*\).*/\1/p' "$log" | head -1)
    [ -n "$port" ] && break
    kill -0 "$DEMO_WORKER_PID" 2>/dev/null || { cat "$log" >&2; die "sluice-worker exited at start"; }
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$log" >&2; die "sluice-worker did not start within 10 s"; }
  # Ready = model loaded, partitions assigned, PostgreSQL connected.
  for i in $(seq 1 150); do
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
      "http://127.0.0.1:$port/readyz" 2>/dev/null && break
    sleep 0.1
  done

  local t0 t1
  t0=$(date +%s.%N)
  SLUICE_NO_PROGRESS=1 ./build/bin/sluice replay --task fraud --data "$data" \
    --brokers "$SLUICE_KAFKA_BROKERS" --rate "$rate/s" | sed 's/^/  replay: /'

  local stored=0 last=-1 waited=0
  while :; do
    stored=$("${psql[@]}" -c "SELECT count(*) FROM sluice.results WHERE domain = 'fraud'" 2>/dev/null || echo 0)
    [ "$stored" -ge "$n_rows" ] && break
    if [ "$stored" = "$last" ]; then waited=$((waited + 1)); else waited=0; fi
    [ "$waited" -ge 300 ] && { tail -20 "$log" >&2; die "results stopped at $stored of $n_rows for 30 s"; }
    last=$stored
    sleep 0.1
  done
  t1=$(date +%s.%N)

  # The labels stay in the data file: join them in a temporary table, never through Kafka.
  python3 - "$data" > "$SLUICE_RUN_DIR/labels.csv" <<'PY'
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8-sig") as f:
    r = csv.reader(f)
    cls = next(r).index("Class")
    for i, row in enumerate(r):
        print(f"creditcard_train.csv:{i},{int(float(row[cls]))}")
PY
  "${psql[@]}" -c "CREATE TABLE IF NOT EXISTS public.demo_fraud_labels (event_id text PRIMARY KEY, class int);
                   TRUNCATE public.demo_fraud_labels;" \
    -c "\\copy public.demo_fraud_labels FROM '$SLUICE_RUN_DIR/labels.csv' WITH (FORMAT csv)"

  local info
  info=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:$port/info" 2>/dev/null || true)

  "${psql[@]}" -F $'\t' > "$SLUICE_RUN_DIR/summary.tsv" <<'SQL'
SELECT count(*),
       count(DISTINCT r.event_id),
       count(*) FILTER (WHERE decision = 'allow'),
       count(*) FILTER (WHERE decision = 'review'),
       count(*) FILTER (WHERE decision = 'block'),
       count(*) FILTER (WHERE l.class = 1),
       count(*) FILTER (WHERE decision = 'block' AND l.class = 1),
       count(*) FILTER (WHERE decision <> 'allow' AND l.class = 1),
       count(*) FILTER (WHERE decision <> 'allow'),
       (SELECT count(*) FROM sluice.outbox WHERE domain = 'fraud'),
       (SELECT count(*) FROM sluice.outbox WHERE domain = 'fraud' AND published_at IS NOT NULL),
       max(model_version)
FROM sluice.results r LEFT JOIN public.demo_fraud_labels l USING (event_id)
WHERE r.domain = 'fraud';
SQL
  local total distinct allow review block pos tp_block tp_flag flagged alerts published version
  IFS=$'\t' read -r total distinct allow review block pos tp_block tp_flag flagged alerts published version \
    < "$SLUICE_RUN_DIR/summary.tsv"
  local e2e
  e2e=$(printf '%s\n' "$info" | grep -m1 '^sluice_end_to_end_seconds:' || true)

  python3 - "$total" "$distinct" "$allow" "$review" "$block" "$pos" "$tp_block" "$tp_flag" \
    "$flagged" "$alerts" "$published" "$version" "$t0" "$t1" "$e2e" <<'PY'
import re, sys
(total, distinct, allow, review, block, pos, tp_block, tp_flag, flagged, alerts, published,
 version, t0, t1, e2e) = sys.argv[1:]
total, distinct, allow, review, block, pos, tp_block, tp_flag, flagged, alerts, published = map(
    int, (total, distinct, allow, review, block, pos, tp_block, tp_flag, flagged, alerts, published))
secs = float(t1) - float(t0)
def pct(a, b): return f"{100.0 * a / b:5.1f} %" if b else "   n/a"
print(f"  events scored      {total} ({distinct} distinct event ids, model {version})")
print(f"  decisions          allow {allow}, review {review}, block {block}")
print(f"  alerts             {alerts} in the outbox, {published} published to sluice.fraud.alerts")
print(f"  against labels     {pos} frauds in the data")
print(f"    block            precision {pct(tp_block, block)}, recall {pct(tp_block, pos)}")
print(f"    review or block  precision {pct(tp_flag, flagged)}, recall {pct(tp_flag, pos)}")
print(f"    (70 % of these rows trained the model; held-out figures are in models/fraud.md)")
print(f"  throughput         {total / secs:,.0f} events/s over {secs:.1f} s (the replay's rate bounds it)")
m = {k: v for k, v in re.findall(r"(p50|p99|count)[=:]\s*([0-9.eE+-]+)", e2e)}
if "p50" in m and "p99" in m:
    print(f"  latency            p50 {float(m['p50'])*1e3:.1f} ms, p99 {float(m['p99'])*1e3:.1f} ms (send to committed result)")
PY
  echo "  look next          psql \"\$SLUICE_PG_DSN\" -c 'SELECT event_id, score, decision, top_features FROM sluice.results ORDER BY score DESC LIMIT 10'"
  echo "                     http://127.0.0.1:$port/metrics, /readyz, /info (the worker's endpoint)"
  [ "${SLUICE_KEEP_RUN:-0}" = 1 ] || echo "                     (./scripts/demo --keep leaves the servers and the worker running for that)"
}

demo_fraud_stop() {
  [ -n "${DEMO_WORKER_PID:-}" ] || return 0
  kill -TERM "$DEMO_WORKER_PID" 2>/dev/null || return 0
  local i
  for i in $(seq 1 100); do kill -0 "$DEMO_WORKER_PID" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$DEMO_WORKER_PID" 2>/dev/null || true
}
