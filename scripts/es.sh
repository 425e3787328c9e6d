#!/usr/bin/env bash
# A local Elasticsearch for tests and `make es-start`: the integ-test zip from Maven Central
# (org.elasticsearch.distribution.integ-test-zip:elasticsearch), run as an unprivileged user on
# 127.0.0.1 (Elasticsearch refuses to run as root) with a JDK 21+ from /usr/lib/jvm.
#
#   scripts/es.sh fetch              download (cached in ~/.m2) + unpack; prints ES_HOME
#   scripts/es.sh run DIR PORT       run in the foreground, state in DIR (config, data, logs)
#   scripts/es.sh start [PORT]       run in the background, state in var/es; waits until healthy
#   scripts/es.sh stop               stop what `start` started
set -euo pipefail

ES_VERSION=${ES_VERSION:-8.19.21}
ES_DIR=${ES_DIR:-/opt/churnops/es}   # must be readable by ES_USER: not under /root
ES_USER=${ES_USER:-churnops-es}
ES_HEAP=${ES_HEAP:--Xms256m -Xmx512m}
ES_NICE=${ES_NICE:-0}                # e.g. 19: the JVM yields the CPU to what it shares the box with
M2_REPO=${M2_REPO:-$HOME/.m2/repository}
GROUP_PATH=org/elasticsearch/distribution/integ-test-zip/elasticsearch
ZIP=$M2_REPO/$GROUP_PATH/$ES_VERSION/elasticsearch-$ES_VERSION.zip
ES_HOME=$ES_DIR/elasticsearch-$ES_VERSION
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${ES_STATE:-$ROOT/var/es}

die() { echo "es.sh: $*" >&2; exit 1; }

java_home() {
  # The newest JDK >= 21 under /usr/lib/jvm (or ES_JAVA_HOME when set).
  if [ -n "${ES_JAVA_HOME:-}" ]; then echo "$ES_JAVA_HOME"; return; fi
  local best="" best_v=0 d v
  for d in /usr/lib/jvm/*/; do
    d=${d%/}
    [ -x "$d/bin/java" ] && [ ! -L "$d" ] || continue
    v=$("$d/bin/java" -XshowSettings:properties -version 2>&1 \
      | awk -F'= ' '/java.specification.version/ {print $2}')
    v=${v%%.*}
    if [ -n "$v" ] && [ "$v" -ge 21 ] && [ "$v" -gt "$best_v" ]; then best=$d; best_v=$v; fi
  done
  [ -n "$best" ] || die "no JDK 21+ under /usr/lib/jvm (install temurin-21/25 or openjdk-21)"
  echo "$best"
}

fetch() {
  if [ ! -f "$ZIP" ]; then
    command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
    mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.8.1:get \
      -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
      -Dtransitive=false >&2
  fi
  if [ ! -x "$ES_HOME/bin/elasticsearch" ]; then
    mkdir -p "$ES_DIR"
    local tmp
    tmp=$(mktemp -d "$ES_DIR/.unpack.XXXXXX")
    unzip -q "$ZIP" -d "$tmp"
    chmod -R a+rX "$tmp"
    mv "$tmp/elasticsearch-$ES_VERSION" "$ES_HOME"
    rmdir "$tmp"
  fi
  chmod a+rx "$ES_DIR" "$(dirname "$ES_DIR")"
  echo "$ES_HOME"
}

ensure_user() {
  [ "$(id -u)" = 0 ] || return 0
  id "$ES_USER" >/dev/null 2>&1 \
    || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
}

run() {
  local dir=${1:?usage: es.sh run DIR PORT} port=${2:?usage: es.sh run DIR PORT}
  local home jdk
  home=$(fetch)
  jdk=$(java_home)
  ensure_user
  mkdir -p "$dir/data" "$dir/logs" "$dir/tmp"
  [ -d "$dir/config" ] || cp -r "$home/config" "$dir/config"
  chmod 755 "$dir"
  local -a as_user=()
  if [ "$(id -u)" = 0 ]; then
    chown -R "$ES_USER:" "$dir"
    as_user=(setpriv --reuid="$ES_USER" --regid="$ES_USER" --init-groups --)
  fi
  # With sched autogroup (Debian's default) CPU is shared per session first and a nice value only
  # counts inside its session: `start` runs this in a session of its own, so nice that too.
  if [ "$ES_NICE" != 0 ] && [ "$(cut -d' ' -f6 /proc/$$/stat)" = "$$" ]; then
    echo "$ES_NICE" >/proc/self/autogroup 2>/dev/null || true
  fi
  exec nice -n "$ES_NICE" "${as_user[@]}" env -i PATH=/usr/bin:/bin HOME="$dir" ES_JAVA_HOME="$jdk" \
    ES_PATH_CONF="$dir/config" ES_TMPDIR="$dir/tmp" ES_JAVA_OPTS="$ES_HEAP" \
    "$home/bin/elasticsearch" \
    -E cluster.name=churnops-test -E node.name=churnops-test \
    -E discovery.type=single-node -E network.host=127.0.0.1 \
    -E http.port="$port" -E transport.port=0 \
    -E path.data="$dir/data" -E path.logs="$dir/logs" \
    -E xpack.security.enabled=false \
    -E cluster.routing.allocation.disk.threshold_enabled=false \
    -E action.destructive_requires_name=false
}

# ours PID: PID's process group (start runs it in a session of its own) still holds the
# Elasticsearch of this STATE; a recorded PID of a killed run may since belong to another process
ours() {
  local p
  for p in $(pgrep -g "$1" 2>/dev/null); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qxF "ES_PATH_CONF=$STATE/config" && return 0
  done
  return 1
}

start() {
  local port=${1:-9200}
  mkdir -p "$STATE"
  if [ -f "$STATE/es.pid" ] && ours "$(cat "$STATE/es.pid")"; then
    echo "already running: http://127.0.0.1:$(cat "$STATE/es.port")"; return 0
  fi
  fetch >/dev/null
  setsid "$0" run "$STATE" "$port" >"$STATE/es.out" 2>&1 &
  echo $! >"$STATE/es.pid"
  echo "$port" >"$STATE/es.port"
  for _ in $(seq 180); do
    if curl -fsS "http://127.0.0.1:$port/_cluster/health?wait_for_status=yellow&timeout=1s" \
      >/dev/null 2>&1; then
      echo "Elasticsearch $ES_VERSION: http://127.0.0.1:$port (ES_URL=http://127.0.0.1:$port)"
      return 0
    fi
    kill -0 "$(cat "$STATE/es.pid")" 2>/dev/null || { tail -20 "$STATE/es.out" >&2; die "exited"; }
    sleep 1
  done
  die "not healthy after 180 s; see $STATE/es.out"
}

stop() {
  [ -f "$STATE/es.pid" ] || { echo "not running"; return 0; }
  local pid
  pid=$(cat "$STATE/es.pid")
  if ! ours "$pid"; then rm -f "$STATE/es.pid"; echo "not running (stale $STATE/es.pid removed)"; return 0; fi
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 30); do ours "$pid" || break; sleep 1; done
  if ours "$pid"; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
  rm -f "$STATE/es.pid"
  echo "stopped"
}

case "${1:-}" in
  fetch) fetch ;;
  java-home) java_home ;;
  run) shift; run "$@" ;;
  start) shift; start "$@" ;;
  stop) stop ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
