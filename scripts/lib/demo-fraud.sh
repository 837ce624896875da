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

  demo_topic sluice.fraud.events 4
  say "fraud desk: sluice-worker with models/fraud.safetensors, $n_rows card transactions replayed at $rate/s"
  demo_worker_start fraud --pipeline=fraud --model-path="$model"
  local port=$DEMO_PORT
  DEMO_WORKER_PID=$DEMO_PID

  local t0 t1
  t0=$(date +%s.%N)
  demo_replay --task fraud --data "$data" --rate "$rate/s"

  demo_wait_count fraud "$n_rows" "$log" "SELECT count(*) FROM sluice.results WHERE domain = 'fraud'"
  t1=$(date +%s.%N)

  demo_labels "$data" Class demo_fraud_labels

  local e2e
  e2e=$(demo_quantiles "$port" sluice_end_to_end_seconds)

  "${psql[@]}" -F $'\t' > "$SLUICE_RUN_DIR/summary.tsv" <<'SQL'
SELECT count(*),
       count(DISTINCT r.event_id),
       count(*) FILTER (WHERE decision = 'allow'),
       count(*) FILTER (WHERE decision = 'review'),
       count(*) FILTER (WHERE decision = 'block'),
       count(*) FILTER (WHERE l.label = 1),
       count(*) FILTER (WHERE decision = 'block' AND l.label = 1),
       count(*) FILTER (WHERE decision <> 'allow' AND l.label = 1),
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
  python3 - "$total" "$distinct" "$allow" "$review" "$block" "$pos" "$tp_block" "$tp_flag" \
    "$flagged" "$alerts" "$published" "$version" "$t0" "$t1" $e2e "$SLUICE_RUN_DIR/demo-summary.tsv" <<'PY'
import sys
(total, distinct, allow, review, block, pos, tp_block, tp_flag, flagged, alerts, published,
 version, t0, t1, p50, p99, summary) = sys.argv[1:]
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
p50, p99 = float(p50) * 1e3, float(p99) * 1e3
print(f"  latency            p50 {p50:.1f} ms, p99 {p99:.1f} ms (send to committed result)")
with open(summary, "a") as f:
    prec = tp_block / block if block else "-"
    rec = tp_block / pos if pos else "-"
    f.write(f"fraud\t{total}\t{alerts}\t{prec}\t{rec}\tblock vs Class\t{total / secs}\t{p50}\t{p99}\n")
PY
  echo "  look next          psql \"\$SLUICE_PG_DSN\" -c 'SELECT event_id, score, decision, top_features FROM sluice.results ORDER BY score DESC LIMIT 10'"
  echo "                     http://127.0.0.1:$port/metrics, /readyz, /info (the worker's endpoint)"
  [ "${SLUICE_KEEP_RUN:-0}" = 1 ] || echo "                     (./scripts/demo --keep leaves the servers and the worker running for that)"
}


