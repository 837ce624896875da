# Shared shell helpers for scripts/*: paths, logging, the package list, the Kafka fetch.
# Sourced, never run. Everything here is idempotent.

SLUICE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SLUICE_CACHE=${SLUICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}
KAFKA_VERSION=3.9.1
KAFKA_LIB=$SLUICE_CACHE/kafka-$KAFKA_VERSION/lib

# Debian 12 packages the build, the tests and the demo need.
SLUICE_APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates python3 python3-numpy
  librdkafka-dev libuv1-dev libpq-dev libprotobuf-c-dev protobuf-c-compiler
  libopenblas-dev libmicrohttpd-dev
  postgresql-15 kcat openjdk-17-jre-headless maven clang-14 libclang-rt-14-dev
)

say() { printf '\033[1m[sluice]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[sluice] error:\033[0m %s\n' "$*" >&2; exit 1; }

# Installs whichever of the given Debian packages are missing (apt-get update only if needed).
sluice_apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null || die "apt-get install failed for: ${missing[*]}"
}

# Fetches the pinned Kafka broker jars from Maven Central into the cache, once.
sluice_kafka_fetch() {
  if [ -f "$KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar" ] && [ -f "$KAFKA_LIB/.complete" ]; then
    return 0
  fi
  say "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_LIB"
  rm -rf "$KAFKA_LIB"
  mkdir -p "$KAFKA_LIB"
  mvn -B -q -f "$SLUICE_ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIB" > "$SLUICE_CACHE/kafka-fetch.log" 2>&1 \
    || { tail -30 "$SLUICE_CACHE/kafka-fetch.log" >&2
         die "could not fetch Kafka $KAFKA_VERSION with Maven (is Maven Central reachable?)"; }
  [ -f "$KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar" ] || die "Maven ran but kafka_2.13-$KAFKA_VERSION.jar is missing"
  touch "$KAFKA_LIB/.complete"
}

# Prints a TCP port on 127.0.0.1 that is free right now.
sluice_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
