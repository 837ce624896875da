# The fault part of the demo, sourced by scripts/demo after the servers are up (and after
# lib/demo-common.sh): two sluice-workers with --pipeline=fault, one with the shipped C-MAPSS
# model (per-engine sensor windows -> remaining useful life, alerts with hysteresis) over
# `sluice replay` of the 100 FD001 turbofan engines, one with the shipped AI4I model (failure
# probability per reading) over the AI4I machines; then the results in PostgreSQL are
# summarised against the data's labels, which never travel through Kafka.
#   SLUICE_DEMO_FAULT_RATE   replay rate of each data set (default 3000/s: below the ~6,000
#                            readings/s one worker sustains here, so latency is not queueing)
#   SLUICE_DEMO_FAULT_AI4I=0 skips the AI4I worker
#   SLUICE_DEMO_FAULT_TOPIC  the C-MAPSS topic (default sluice.fault.events; the AI4I worker's
#                            is the same with .ai4i before .events)

DEMO_FAULT_PIDS=()
DEMO_FAULT_HORIZON=50 # cycles: an alert is "right" when the engine failed within this many

demo_fault() {
  local data=$SLUICE_ROOT/../shared/data/fault/cmapss/train_FD001.txt
  local model=$SLUICE_ROOT/models/fault-cmapss.safetensors
  local rate=${SLUICE_DEMO_FAULT_RATE:-3000}
  local log=$SLUICE_RUN_DIR/worker-fault.log
  local psql=(psql "$SLUICE_PG_DSN" -X -q -v ON_ERROR_STOP=1 -At)
  [ -f "$data" ] || die "the C-MAPSS data set is missing: $data (../shared/data beside the repository)"
  [ -f "$model" ] || die "the fault model is missing: $model (models/reproduce fault-cmapss rebuilds it)"

  # Readings, and windows to score: every reading from an engine's T-th cycle on (the model's
  # window T, stride 1, one cycle a minute with no gaps).
  local n_rows n_windows n_units window
  window=$("$DEMO_BIN/sluice" inspect --json "$model" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["config"]["encoder"]["window"])') ||
    die "sluice inspect could not read the window of $model"
  read -r n_rows n_windows n_units < <(python3 - "$data" "$window" <<'PY'
import collections, sys
units = collections.Counter(int(l.split()[0]) for l in open(sys.argv[1]) if l.strip())
t = int(sys.argv[2])
print(sum(units.values()), sum(max(0, n - t + 1) for n in units.values()), len(units))
PY
)
  local topic=${SLUICE_DEMO_FAULT_TOPIC:-sluice.fault.events}
  demo_topic "$topic" 4
  say "fault: sluice-worker --pipeline=fault with models/fault-cmapss.safetensors, $n_rows readings of $n_units turbofan engines (C-MAPSS FD001, run to failure) replayed at $rate/s"
  # An engine alerts once its predicted remaining life stays at or below 30 cycles for 3
  # cycles (2 minutes of replay time), and clears above 45.
  demo_worker_start fault --pipeline=fault --model-path="$model" --topic="$topic" \
    --fault-alert-enter=30 --fault-alert-clear=45 --fault-alert-min-fire=2m
  local port=$DEMO_PORT
  DEMO_FAULT_PIDS+=("$DEMO_PID")

  local t0 t1
  t0=$(date +%s.%N)
  demo_replay --task fault-cmapss --data "$data" --topic "$topic" --rate "$rate/s"
  demo_wait_count fault "$n_windows" "$log" \
    "SELECT count(*) FROM sluice.fault_results WHERE kind = 'rul'"
  t1=$(date +%s.%N)

  # The labels: each reading's true remaining life (the engine's last cycle - this cycle).
  python3 - "$data" > "$SLUICE_RUN_DIR/fault-labels.csv" <<'PY'
import collections, sys
rows = [l.split()[:2] for l in open(sys.argv[1]) if l.strip()]
last = collections.defaultdict(int)
for u, c in rows:
    last[u] = max(last[u], int(c))
for i, (u, c) in enumerate(rows):
    print(f"train_FD001.txt:{i},{u},{last[u] - int(c)}")
PY
  "${psql[@]}" -c "CREATE TABLE IF NOT EXISTS public.demo_fault_labels (event_id text PRIMARY KEY, unit int, rul int);
                   TRUNCATE public.demo_fault_labels;" \
    -c "\\copy public.demo_fault_labels FROM '$SLUICE_RUN_DIR/fault-labels.csv' WITH (FORMAT csv)"

  local e2e
  e2e=$(demo_quantiles "$port" sluice_end_to_end_seconds)
  # Alert onsets are the results whose phase turned to firing; each is one FIRING outbox row.
  "${psql[@]}" -F $'\t' -v h="$DEMO_FAULT_HORIZON" > "$SLUICE_RUN_DIR/fault-summary.tsv" <<'SQL'
WITH r AS (
  SELECT f.*, l.rul AS true_rul,
         lag(alert_phase) OVER (PARTITION BY device_id ORDER BY event_time) AS prev
  FROM sluice.fault_results f JOIN public.demo_fault_labels l USING (event_id)
  WHERE f.kind = 'rul'),
onsets AS (SELECT * FROM r WHERE alert_phase = 'firing' AND coalesce(prev, 'idle') IN ('idle', 'pending')),
first_onset AS (SELECT DISTINCT ON (device_id) device_id, true_rul FROM onsets ORDER BY device_id, event_time)
SELECT (SELECT count(*) FROM r),
       (SELECT count(DISTINCT device_id) FROM r),
       (SELECT count(*) FROM sluice.outbox WHERE domain = 'fault' AND alert_id LIKE 'fault:%:rul:%:firing'),
       (SELECT count(*) FROM sluice.outbox WHERE domain = 'fault' AND alert_id LIKE 'fault:%:rul:%:cleared'),
       (SELECT count(*) FROM sluice.outbox WHERE domain = 'fault' AND alert_id LIKE 'fault:%:rul:%' AND published_at IS NOT NULL),
       (SELECT count(*) FROM onsets),
       (SELECT count(*) FROM onsets WHERE true_rul <= :h),
       (SELECT count(DISTINCT device_id) FROM onsets WHERE true_rul <= :h),
       (SELECT coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY true_rul), -1) FROM first_onset),
       (SELECT count(*) FROM first_onset WHERE true_rul < 10),
       (SELECT round(sqrt(avg((least(true_rul, 125) - score) ^ 2))::numeric, 1) FROM r),
       (SELECT max(model_version) FROM r);
SQL
  local results devices fired cleared published onsets good_onsets engines_warned median_lead late rmse version
  IFS=$'\t' read -r results devices fired cleared published onsets good_onsets engines_warned median_lead late rmse version \
    < "$SLUICE_RUN_DIR/fault-summary.tsv"

  python3 - "$n_rows" "$results" "$devices" "$fired" "$cleared" "$published" "$onsets" \
    "$good_onsets" "$engines_warned" "$median_lead" "$late" "$rmse" "$version" "$n_units" \
    "$DEMO_FAULT_HORIZON" "$t0" "$t1" $e2e "$SLUICE_RUN_DIR/demo-summary.tsv" <<'PY'
import sys
(n_rows, results, devices, fired, cleared, published, onsets, good, warned, lead, late, rmse,
 version, n_units, h, t0, t1, p50, p99, summary) = sys.argv[1:]
n_rows, results, devices, fired, cleared, published, onsets, good, warned, lead, late, n_units, h = map(
    int, (n_rows, results, devices, fired, cleared, published, onsets, good, warned, lead, late, n_units, h))
secs = float(t1) - float(t0)
prec = good / onsets if onsets else float("nan")
rec = warned / n_units if n_units else float("nan")
def pct(v): return "  n/a" if v != v else f"{100 * v:5.1f} %"
print(f"  readings           {n_rows} from {devices} engines; {results} windows scored (model {version})")
print(f"  remaining life     RMSE {rmse} cycles against the truth (capped at 125 as trained)")
print(f"  alerts             {fired} fired, {cleared} cleared in the outbox; {published} published to sluice.fault.alerts")
print(f"  against labels     an alert is right when its engine failed within {h} cycles")
print(f"    precision        {pct(prec)} ({good} of {onsets} alerts)")
print(f"    recall           {pct(rec)} ({warned} of {n_units} engines warned within {h} cycles of failure)")
print(f"    warning          median {lead} cycles before failure at the first alert; {late} engines warned under 10 cycles before")
print(f"    (70 of these engines trained the model; held-out figures are in models/fault-cmapss.md)")
print(f"  throughput         {n_rows / secs:,.0f} readings/s over {secs:.1f} s (the replay's rate bounds it)")
p50, p99 = float(p50) * 1e3, float(p99) * 1e3
print(f"  latency            p50 {p50:.1f} ms, p99 {p99:.1f} ms (send to committed result)")
with open(summary, "a") as f:
    f.write(f"fault\t{n_rows}\t{fired}\t{prec if onsets else '-'}\t{rec}\t"
            f"alert vs failure <= {h} cycles\t{n_rows / secs}\t{p50}\t{p99}\n")
PY
  echo "  look next          psql \"\$SLUICE_PG_DSN\" -c \"SELECT event_time, score, alert_phase FROM sluice.fault_results WHERE device_id = 'train_FD001-unit-1' ORDER BY event_time DESC LIMIT 20\""
  echo "                     psql \"\$SLUICE_PG_DSN\" -c \"SELECT alert_id, created_at, published_at FROM sluice.outbox WHERE domain = 'fault' ORDER BY id LIMIT 20\""
  echo "                     http://127.0.0.1:$port/metrics (sluice_fault_*), /readyz, /info"

  [ "${SLUICE_DEMO_FAULT_AI4I:-1}" = 1 ] && demo_fault_ai4i
  return 0
}

# The second fault worker: AI4I machines, one reading each, scored alone by the tabular model
# (failure probability); an alert fires at the model card's threshold.
demo_fault_ai4i() {
  local data=$SLUICE_ROOT/../shared/data/fault/ai4i2020_train.csv
  local model=$SLUICE_ROOT/models/fault-ai4i.safetensors
  local rate=${SLUICE_DEMO_FAULT_RATE:-3000}
  local log=$SLUICE_RUN_DIR/worker-fault-ai4i.log
  local psql=(psql "$SLUICE_PG_DSN" -X -q -v ON_ERROR_STOP=1 -At)
  [ -f "$data" ] || die "the AI4I data set is missing: $data"
  [ -f "$model" ] || die "the fault model is missing: $model (models/reproduce fault-ai4i rebuilds it)"
  local n_rows
  n_rows=$(( $(wc -l < "$data") - 1 ))
  local topic=${SLUICE_DEMO_FAULT_TOPIC:-sluice.fault.events}
  topic=${topic%.events}.ai4i.events
  demo_topic "$topic" 4
  say "fault (2nd worker): --pipeline=fault with models/fault-ai4i.safetensors, $n_rows AI4I machine readings replayed at $rate/s"
  demo_worker_start fault-ai4i --pipeline=fault --model-path="$model" --topic="$topic" \
    --kafka-group=sluice-fault-ai4i
  local port=$DEMO_PORT
  DEMO_FAULT_PIDS+=("$DEMO_PID")
  local t0 t1
  t0=$(date +%s.%N)
  demo_replay --task fault-ai4i --data "$data" --topic "$topic" --rate "$rate/s"
  demo_wait_count fault-ai4i "$n_rows" "$log" \
    "SELECT count(*) FROM sluice.fault_results WHERE kind = 'failure'"
  t1=$(date +%s.%N)

  demo_labels "$data" "Machine failure" demo_fault_ai4i_labels
  local e2e
  e2e=$(demo_quantiles "$port" sluice_end_to_end_seconds)
  "${psql[@]}" -F $'\t' > "$SLUICE_RUN_DIR/fault-ai4i-summary.tsv" <<'SQL'
SELECT count(*),
       count(*) FILTER (WHERE alert_phase = 'firing'),
       count(*) FILTER (WHERE l.label = 1),
       count(*) FILTER (WHERE alert_phase = 'firing' AND l.label = 1),
       (SELECT count(*) FROM sluice.outbox WHERE domain = 'fault' AND alert_id LIKE 'fault:%:failure:%:firing'),
       max(model_version)
FROM sluice.fault_results f JOIN public.demo_fault_ai4i_labels l USING (event_id)
WHERE f.kind = 'failure';
SQL
  local results firing pos tp alerts version
  IFS=$'\t' read -r results firing pos tp alerts version < "$SLUICE_RUN_DIR/fault-ai4i-summary.tsv"
  python3 - "$results" "$firing" "$pos" "$tp" "$alerts" "$version" "$t0" "$t1" $e2e \
    "$SLUICE_RUN_DIR/demo-summary.tsv" <<'PY'
import sys
results, firing, pos, tp, alerts, version, t0, t1, p50, p99, summary = sys.argv[1:]
results, firing, pos, tp, alerts = map(int, (results, firing, pos, tp, alerts))
secs = float(t1) - float(t0)
prec = tp / firing if firing else float("nan")
rec = tp / pos if pos else float("nan")
def pct(v): return "  n/a" if v != v else f"{100 * v:5.1f} %"
print(f"  readings           {results} machines scored (model {version}); {alerts} failure alerts in the outbox")
print(f"  against labels     {pos} machine failures in the data")
print(f"    precision        {pct(prec)}, recall {pct(rec)} (alert at the model card's threshold)")
print(f"    (70 % of these rows trained the model; held-out figures are in models/fault-ai4i.md)")
print(f"  throughput         {results / secs:,.0f} readings/s over {secs:.1f} s (the replay's rate bounds it)")
p50, p99 = float(p50) * 1e3, float(p99) * 1e3
print(f"  latency            p50 {p50:.1f} ms, p99 {p99:.1f} ms (send to committed result)")
with open(summary, "a") as f:
    f.write(f"fault-ai4i\t{results}\t{alerts}\t{prec if firing else '-'}\t{rec}\t"
            f"alert vs Machine failure\t{results / secs}\t{p50}\t{p99}\n")
PY
  echo "  look next          psql \"\$SLUICE_PG_DSN\" -c \"SELECT device_id, score FROM sluice.fault_results WHERE kind = 'failure' ORDER BY score DESC LIMIT 10\""
}

# Stops the fault workers (demo_workers_stop stops every worker of the demo; this only ours).
demo_fault_stop() {
  local p i
  for p in "${DEMO_FAULT_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${DEMO_FAULT_PIDS[@]}"; do
    for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  DEMO_FAULT_PIDS=()
}
