# Start and stop a throwaway single-node KRaft Kafka broker and a PostgreSQL 15 cluster on
# 127.0.0.1, each on a free port, with all data under one run directory. Sourced, never run.
#
#   servers_start            starts both; exports SLUICE_KAFKA_BROKERS, SLUICE_PG_DSN,
#                            SLUICE_RUN_DIR, SLUICE_PG_CTL (and writes them to $SLUICE_RUN_DIR/env)
#   servers_stop             stops both and removes the run directory (unless SLUICE_KEEP_RUN=1)
#
# Several runs can coexist on one machine: nothing is shared but the Kafka jar cache.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

kafka_start() {
  local dir=$SLUICE_RUN_DIR/kafka port cport i
  mkdir -p "$dir/data" "$dir/logs"
  port=$(sluice_free_port); cport=$(sluice_free_port)
  while [ "$cport" = "$port" ]; do cport=$(sluice_free_port); done
  sed -e "s#@PORT@#$port#g" -e "s#@CPORT@#$cport#g" -e "s#@DATA@#$dir/data#g" \
    "$SLUICE_ROOT/scripts/kafka/server.properties.in" > "$dir/server.properties"
  # C1 only (TieredStopAtLevel=1) starts the broker fastest, which is what the tests need;
  # SLUICE_KAFKA_JIT=full lets a long benchmark run the broker on fully optimised code.
  local jit=(-XX:TieredStopAtLevel=1)
  [ "${SLUICE_KAFKA_JIT:-}" = full ] && jit=()
  # SLUICE_KAFKA_JVM_OPTS: more JVM options for experiments (e.g. -Xlog:gc:file=gc.log).
  local extra=()
  [ -n "${SLUICE_KAFKA_JVM_OPTS:-}" ] && read -r -a extra <<< "$SLUICE_KAFKA_JVM_OPTS"
  # ZGC: G1's young collections paused the broker for 60-120 ms now and then at 10,000
  # events/s (its GC log), which was the worst of the pipeline's end-to-end tail; ZGC's pauses
  # are under a millisecond (bench/pipeline/README.md, fifth round).
  local jopts=(-Xms768m -Xmx768m -XX:+UseZGC "${jit[@]}" "${extra[@]}"
               -Djava.awt.headless=true "-Dkafka.logs.dir=$dir/logs"
               "-Dlog4j.configuration=file:$SLUICE_ROOT/scripts/kafka/log4j.properties")
  java "${jopts[@]}" -cp "$KAFKA_LIB/*" kafka.tools.StorageTool format \
    -t "$(java -cp "$KAFKA_LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)" \
    -c "$dir/server.properties" > "$dir/format.out" 2>&1 \
    || { cat "$dir/format.out" >&2; die "kafka storage format failed"; }
  setsid java "${jopts[@]}" -cp "$KAFKA_LIB/*" kafka.Kafka "$dir/server.properties" \
    > "$dir/kafka.out" 2>&1 < /dev/null &
  echo $! > "$dir/pid"
  for i in $(seq 1 240); do
    if kcat -b "127.0.0.1:$port" -L -m 2 >/dev/null 2>&1; then
      export SLUICE_KAFKA_BROKERS=127.0.0.1:$port
      say "kafka $KAFKA_VERSION up on $SLUICE_KAFKA_BROKERS after $((i / 4)).$((i % 4 * 25))s"
      return 0
    fi
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || { tail -40 "$dir/kafka.out" >&2; die "kafka exited during start"; }
    sleep 0.25
  done
  tail -40 "$dir/kafka.out" >&2
  die "kafka did not answer a metadata request within 60 s"
}

kafka_stop() {
  local pidf=$SLUICE_RUN_DIR/kafka/pid pid i
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  kill -TERM "$pid" 2>/dev/null || { rm -f "$pidf"; return 0; }
  for i in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidf"
}

pg_start() {
  local dir=$SLUICE_RUN_DIR/pg port
  mkdir -p "$dir"
  chown postgres:postgres "$dir" 2>/dev/null || true
  port=${SLUICE_PG_PORT:-$(sluice_free_port)}
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    pg_as "$PG_BIN/initdb" -D "$dir/data" -A trust -U sluice -E UTF8 --locale=C.UTF-8 --no-sync \
      ${SLUICE_PG_INITDB_OPTS:-} \
      > "$dir/initdb.out" 2>&1 || { cat "$dir/initdb.out" >&2; die "initdb failed"; }
  fi
  # Durable as in production (fsync, synchronous commit). wal_init_zero=off: a fresh cluster
  # creates every WAL segment new, and zero-filling each 16 MB segment was a fifth of the
  # server's CPU in bench/pipeline; a long-running server recycles its segments instead, so
  # this is its steady state, not a shortcut (ext4 allocates on write either way).
  # SLUICE_PG_OPTS adds server options (e.g. "-c shared_buffers=1GB") for experiments, as
  # SLUICE_PG_INITDB_OPTS adds initdb options (e.g. "--wal-segsize=64") to a new cluster.
  pg_as "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on -c max_connections=200 -c wal_init_zero=off ${SLUICE_PG_OPTS:-}" \
    > "$dir/pg_ctl.out" 2>&1 || { cat "$dir/pg_ctl.out" "$dir/postgres.log" >&2; die "postgres did not start"; }
  export SLUICE_PG_PORT=$port
  export SLUICE_PG_DSN="host=127.0.0.1 port=$port user=sluice dbname=postgres connect_timeout=5"
  say "postgres 15 up on 127.0.0.1:$port"
}

pg_stop() {
  local dir=$SLUICE_RUN_DIR/pg
  [ -f "$dir/data/postmaster.pid" ] || return 0
  pg_as "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop > /dev/null 2>&1 || true
}

# PostgreSQL refuses to run as root; run its tools as the postgres user when we are root.
pg_as() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

servers_start() {
  SLUICE_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sluice-run.XXXXXX")
  chmod 755 "$SLUICE_RUN_DIR"
  export SLUICE_RUN_DIR
  pg_start &
  local pg_job=$!
  kafka_start
  wait "$pg_job" || die "postgres failed to start"
  # pg_start ran in a subshell: recover its exports from the cluster's own files.
  SLUICE_PG_PORT=$(sed -n 4p "$SLUICE_RUN_DIR/pg/data/postmaster.pid")
  export SLUICE_PG_PORT
  export SLUICE_PG_DSN="host=127.0.0.1 port=$SLUICE_PG_PORT user=sluice dbname=postgres connect_timeout=5"
  # The chaos tests restart PostgreSQL with this pg_ctl on $SLUICE_RUN_DIR/pg/data.
  export SLUICE_PG_CTL=$PG_BIN/pg_ctl
  {
    echo "export SLUICE_RUN_DIR='$SLUICE_RUN_DIR'"
    echo "export SLUICE_KAFKA_BROKERS='$SLUICE_KAFKA_BROKERS'"
    echo "export SLUICE_PG_PORT='$SLUICE_PG_PORT'"
    echo "export SLUICE_PG_DSN='$SLUICE_PG_DSN'"
    echo "export SLUICE_PG_CTL='$PG_BIN/pg_ctl'"
  } > "$SLUICE_RUN_DIR/env"
}

servers_stop() {
  [ -n "${SLUICE_RUN_DIR:-}" ] && [ -d "$SLUICE_RUN_DIR" ] || return 0
  kafka_stop
  pg_stop
  if [ "${SLUICE_KEEP_RUN:-0}" != 1 ]; then rm -rf "$SLUICE_RUN_DIR"; fi
}
