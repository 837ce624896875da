# The records part of the demo, sourced by scripts/demo after the servers are up (and after
# lib/demo-common.sh): a sluice-worker with --pipeline=records and the shipped
# records-mtsamples model (clinical note -> medical specialty, with sections and evidence
# spans) over `sluice replay` of the first notes of MTSamples; then the analyses in PostgreSQL
# are summarised against the data's labels, which never travel through Kafka.
#   SLUICE_DEMO_RECORDS_NOTES  how many notes (rows of the file) to replay (default 240)
#   SLUICE_DEMO_RECORDS_RATE   replay rate (default 30/s: it only paces the stream; with the
#                              bag-of-pieces model one worker analyses ~220 notes/s with
#                              evidence on this 2-core machine, evidence ~1 ms a note)
#   SLUICE_DEMO_RECORDS_ALERT  a label whose confident predictions raise an alert
#                              (default "Hematology - Oncology")

DEMO_RECORDS_PIDS=()

demo_records() {
  local data=$SLUICE_ROOT/../shared/data/clinical/mtsamples_train.csv
  local model=$SLUICE_ROOT/models/records-mtsamples.safetensors
  local n=${SLUICE_DEMO_RECORDS_NOTES:-240}
  local rate=${SLUICE_DEMO_RECORDS_RATE:-30}
  local alert=${SLUICE_DEMO_RECORDS_ALERT:-Hematology - Oncology}
  local log=$SLUICE_RUN_DIR/worker-records.log
  local psql=(psql "$SLUICE_PG_DSN" -X -q -v ON_ERROR_STOP=1 -At)
  [ -f "$data" ] || die "the MTSamples data set is missing: $data (../shared/data beside the repository)"
  [ -f "$model" ] || die "the records model is missing: $model (models/reproduce records-mtsamples rebuilds it)"

  # The labels, from the data file only: each note's specialty as the model was trained and
  # evaluated on it (bench/quality/SPLITS.md: a text's least frequent label, its part of the
  # split by the hash of its normalised text), and which of the first n rows have a text at
  # all (blank ones are dead-lettered, not analysed).
  python3 - "$data" "$n" > "$SLUICE_RUN_DIR/records-labels.csv" 2> "$SLUICE_RUN_DIR/records-counts.txt" <<'PY'
import collections, csv, re, sys
path, n = sys.argv[1], int(sys.argv[2])
csv.field_size_limit(1 << 30)
with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
def norm(t):
    t = "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in t)
    return re.sub(r"[ \t\n\v\f\r]+", " ", t).strip(" ")
def fnv1a(s):
    h = 0xcbf29ce484222325
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h
freq = collections.Counter(r["medical_specialty"] for r in rows if norm(r["transcription"]))
labels = collections.defaultdict(set)
for r in rows:
    t = norm(r["transcription"])
    if t:
        labels[t].add(r["medical_specialty"])
analysed = 0
for r in rows[:n]:
    t = norm(r["transcription"])
    if not r["transcription"].strip(" \t\n\v\f\r"):
        continue
    analysed += 1
    label = min(labels[t], key=lambda l: (freq[l], l.encode()))
    h = fnv1a(t) % 100
    part = "train" if h < 70 else "validation" if h < 85 else "test"
    print(f"mtsamples_train-{r['note_id']},{label},{part}")
print(analysed, file=sys.stderr)
PY
  local n_notes
  n_notes=$(cat "$SLUICE_RUN_DIR/records-counts.txt")
  "${psql[@]}" -c "CREATE TABLE IF NOT EXISTS public.demo_records_labels (note_id text PRIMARY KEY, label text, part text);
                   TRUNCATE public.demo_records_labels;" \
    -c "\\copy public.demo_records_labels FROM '$SLUICE_RUN_DIR/records-labels.csv' WITH (FORMAT csv)"

  demo_topic sluice.records.events 2
  say "records: sluice-worker --pipeline=records with models/records-mtsamples.safetensors, the first $n rows of MTSamples ($n_notes notes with text) replayed at $rate/s"
  demo_worker_start records --pipeline=records --model-path="$model" \
    --records-alert-labels="$alert" --records-alert-min-probability=0.5
  local port=$DEMO_PORT
  DEMO_RECORDS_PIDS+=("$DEMO_PID")

  local t0 t1
  t0=$(date +%s.%N)
  demo_replay --task records-mtsamples --data "$data" --rate "$rate/s" --limit "$n"
  demo_wait_count records "$n_notes" "$log" "SELECT count(*) FROM sluice.record_analysis"
  t1=$(date +%s.%N)

  local e2e ev dead
  e2e=$(demo_quantiles "$port" sluice_end_to_end_seconds)
  ev=$(demo_quantiles "$port" sluice_records_evidence_seconds)
  dead=$(demo_http_get "http://127.0.0.1:$port/metrics" |
    awk '/^sluice_events_dead_lettered_total/ {s += $2} END {print s + 0}')
  "${psql[@]}" -F $'\t' > "$SLUICE_RUN_DIR/records-pairs.tsv" <<'SQL'
SELECT r.predicted_label, coalesce(l.label, ''), coalesce(l.part, ''), r.truncated::int, r.n_chunks
FROM sluice.record_analysis r LEFT JOIN public.demo_records_labels l USING (note_id);
SQL
  local alerts published version
  IFS=$'\t' read -r alerts published version < <("${psql[@]}" -F $'\t' -c "
    SELECT (SELECT count(*) FROM sluice.outbox WHERE domain = 'records'),
           (SELECT count(*) FROM sluice.outbox WHERE domain = 'records' AND published_at IS NOT NULL),
           (SELECT max(model_version) FROM sluice.record_analysis)")

  "${psql[@]}" -c "SELECT c->>'label' FROM (SELECT classes FROM sluice.record_analysis LIMIT 1) r,
                   jsonb_array_elements(r.classes) c" > "$SLUICE_RUN_DIR/records-model-labels.txt"
  python3 - "$SLUICE_RUN_DIR/records-pairs.tsv" "$SLUICE_RUN_DIR/records-model-labels.txt" "$n" "$dead" "$alerts" "$published" "$version" \
    "$alert" "$t0" "$t1" $e2e $ev "$SLUICE_RUN_DIR/demo-summary.tsv" <<'PY'
import collections, sys
(pairs, labels_file, n_rows, dead, alerts, published, version, alert, t0, t1, p50, p99, ev50,
 ev99, summary) = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(pairs) if l.strip()]
preds = [(p, y, part) for p, y, part, _, _ in rows]
secs = float(t1) - float(t0)
truncated = sum(int(r[3]) for r in rows)
chunks = sum(int(r[4]) for r in rows)

def scores(items, known):
    items = [(p, y) for p, y, _ in items if y in known]
    if not items:
        return 0, float("nan"), float("nan"), float("nan"), float("nan")
    acc = sum(p == y for p, y in items) / len(items)
    f1s, precs, recs = [], [], []
    for c in sorted({y for _, y in items}):
        tp = sum(p == c and y == c for p, y in items)
        fp = sum(p == c and y != c for p, y in items)
        fn = sum(p != c and y == c for p, y in items)
        pr = tp / (tp + fp) if tp + fp else 0.0
        rc = tp / (tp + fn) if tp + fn else 0.0
        precs.append(pr)
        recs.append(rc)
        f1s.append(2 * pr * rc / (pr + rc) if pr + rc else 0.0)
    k = len(f1s)
    return len(items), acc, sum(f1s) / k, sum(precs) / k, sum(recs) / k

# The model's labels: every row's classes list them all.
known = {l.rstrip("\n") for l in open(labels_file) if l.strip()}
n_all, acc, f1, mp, mr = scores(preds, known)
held = [x for x in preds if x[2] in ("validation", "test")]
n_held, acc_h, f1_h, _, _ = scores(held, known)
n_train = sum(1 for x in preds if x[2] == "train" and x[1] in known)
other = sum(1 for _, y, _ in preds if y not in known)
def pct(v): return "  n/a" if v != v else f"{100 * v:5.1f} %"
print(f"  notes              {len(rows)} analysed (model {version}) of {n_rows} rows; {dead} dead-lettered (blank text)")
print(f"  long notes         {chunks / max(1, len(rows)):.2f} chunks a note on average; {truncated} truncated past records.max_chunks")
print(f"  against labels     {n_all} notes of the model's {len(known)} specialties ({other} of rarer specialties it cannot name)")
print(f"    all              accuracy {pct(acc)}, macro-F1 {pct(f1)}  ({n_train} of these notes trained the model)")
print(f"    held out         accuracy {pct(acc_h)}, macro-F1 {pct(f1_h)} on the {n_held} validation/test notes among them")
print(f"                     (models/records-mtsamples.md has the test-split figures)")
print(f"  alerts             {alerts} for \"{alert}\" at probability >= 0.5 in the outbox, {published} published to sluice.records.alerts")
print(f"  throughput         {len(rows) / secs:,.1f} notes/s over {secs:.1f} s (the replay's rate bounds it)")
p50, p99 = float(p50) * 1e3, float(p99) * 1e3
print(f"  latency            p50 {p50:.0f} ms, p99 {p99:.0f} ms (send to committed analysis)")
print(f"  evidence           p50 {float(ev50) * 1e3:.0f} ms, p99 {float(ev99) * 1e3:.0f} ms a note (segments occluded on the chunk that speaks most)")
with open(summary, "a") as f:
    f.write(f"records\t{len(rows)}\t{alerts}\t{mp}\t{mr}\tspecialty (macro)\t{len(rows) / secs}\t{p50}\t{p99}\n")
PY
  echo "  one analysis"
  "${psql[@]}" -F $'\t' -c "
    SELECT note_id, predicted_label, round(score::numeric, 3), n_tokens, n_chunks,
           (SELECT string_agg(s->>'name', ', ') FROM jsonb_array_elements(sections) s),
           left(evidence->0->>'text', 100)
    FROM sluice.record_analysis WHERE jsonb_array_length(evidence) > 0
    ORDER BY note_id LIMIT 1" | while IFS=$'\t' read -r id label score toks chunks sections span; do
    echo "    note             $id: $label (probability $score), $toks tokens in $chunks chunk(s)"
    echo "    sections         ${sections:-none found}"
    echo "    top evidence     \"$span\""
  done
  echo "  look next          psql \"\$SLUICE_PG_DSN\" -c \"SELECT note_id, predicted_label, score, n_tokens, truncated, jsonb_pretty(evidence) FROM sluice.record_analysis ORDER BY scored_at DESC LIMIT 3\""
  echo "                     psql \"\$SLUICE_PG_DSN\" -c \"SELECT predicted_label, count(*), round(avg(score)::numeric, 3) FROM sluice.record_analysis GROUP BY 1 ORDER BY 2 DESC\""
  echo "                     http://127.0.0.1:$port/metrics (sluice_records_*), /info"
}

# Stops the records worker (scripts/demo's demo_workers_stop stops it too).
demo_records_stop() {
  local p i
  for p in "${DEMO_RECORDS_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${DEMO_RECORDS_PIDS[@]}"; do
    for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  DEMO_RECORDS_PIDS=()
}
