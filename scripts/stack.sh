#!/usr/bin/env bash
# A Docker engine for the live stack test (`make stack-test`), started and stopped by hand (no
# systemd), and the local stand-ins for what no image registry can give here.
#
#   scripts/stack.sh install        apt-get the engine (docker.io, iptables, debootstrap) and the
#                                   Chromium the UI's tests drive, if missing
#   scripts/stack.sh up             start containerd + dockerd in the background; prints DOCKER_HOST
#   scripts/stack.sh down           leave the machine as `up` found it (see below); idempotent
#   scripts/stack.sh check-clean    exit 1 (and say what) if anything of a run is left
#   scripts/stack.sh base           make the base images: Debian bookworm + python3 (debootstrap,
#                                   `docker import`) and uv FROM scratch (the wheel from PyPI)
#   scripts/stack.sh registry-bin   the Docker distribution registry, built from its Go module
#
# `up` records what it changes under STATE (iptables of every table, the sysctls dockerd sets) and
# `down` puts it back: the swarm is left, the stack's volumes removed, dockerd and its containerd
# stopped by their PIDs (then any shim they left), overlay and netns mounts unmounted, docker0 and
# docker_gwbridge deleted, iptables and the sysctls restored. When an engine already answers on
# the socket, `up` uses it and `down` leaves it running (it only removes what the test made).
#
# The engine's data root is a cache under ~/.cache (images, build cache): a second run reuses the
# base images and every unchanged layer. Nothing else of a run is kept.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${STACK_CACHE:-$HOME/.cache/churnops/stack}
STATE=${STACK_STATE:-/run/churnops-stack}
DATA_ROOT=${STACK_DATA_ROOT:-$CACHE/docker}
EXEC_ROOT=/var/run/docker
SOCKET=/var/run/docker.sock
DOCKER=${STACK_DOCKER:-/usr/bin/docker}       # Debian's CLI: it builds with the daemon's BuildKit
SUITE=${STACK_SUITE:-bookworm}
MIRROR=${STACK_MIRROR:-http://deb.debian.org/debian}
# "-slim": apt and dpkg set up as in Debian's official slim images (see base below); a change of
# that recipe needs a new name here, so a kept cache does not reuse the old image
BASE_IMAGE=${STACK_BASE_IMAGE:-churnops-local/python:3.11-$SUITE-slim}
# the uv the Dockerfiles name (ARG UV_IMAGE=...:<version>), made from the same release's wheel
UV_VERSION=${STACK_UV_VERSION:-$(sed -n 's/^ARG UV_IMAGE=.*:\([0-9.]*\)$/\1/p' "$ROOT/Dockerfile.api")}
UV_IMAGE=${STACK_UV_IMAGE:-churnops-local/uv:$UV_VERSION}
REGISTRY_MODULE=github.com/distribution/distribution/v3/cmd/registry
REGISTRY_VERSION=${STACK_REGISTRY_VERSION:-v3.0.0}
# what dockerd and containerd create outside the roots they are given (libnetwork's load-balancer
# sandbox files under /var/lib/docker whatever --data-root says, runc's and containerd's state
# folders): removed by `down` when they did not exist before `up`
OUTSIDE=(/var/lib/docker /run/containerd /run/runc)
SYSCTLS=(net/ipv4/ip_forward net/bridge/bridge-nf-call-iptables net/bridge/bridge-nf-call-ip6tables)
TABLES=(filter nat mangle raw security)

say() { echo "stack.sh: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (it starts dockerd and changes iptables)"

engine_answers() { "$DOCKER" -H "unix://$SOCKET" version >/dev/null 2>&1; }

install() {
  local need=()
  command -v dockerd >/dev/null && [ -x /usr/bin/docker ] || need+=(docker.io)
  command -v iptables >/dev/null || need+=(iptables)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || need+=(chromium)  # the UI's form is tested in it
  if iptables -V 2>/dev/null | grep -q nf_tables || ! command -v iptables >/dev/null; then
    command -v nft >/dev/null || need+=(nftables)  # to drop the nf_tables tables dockerd created
  fi
  if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

# --- up -------------------------------------------------------------------------------------------
save_state() {
  mkdir -p "$STATE"
  # one dump of every table, split per table: `-t TABLE` would create a missing nf_tables table
  local tool t
  for tool in iptables ip6tables; do
    for t in "${TABLES[@]}"; do : >"$STATE/$tool.$t"; done
    command -v "$tool-save" >/dev/null || continue
    "$tool-save" | awk -v dir="$STATE" -v tool="$tool" '
      /^\*/ { table = substr($0, 2) }
      table != "" { print > (dir "/" tool "." table) }
      /^COMMIT/ { table = "" }'
  done
  local s
  for s in "${SYSCTLS[@]}"; do
    [ -r "/proc/sys/$s" ] && echo "$s $(cat "/proc/sys/$s")" >>"$STATE/sysctl"
  done
  if [ -d "$EXEC_ROOT" ]; then touch "$STATE/exec-root-existed"; fi
  local path
  for path in "${OUTSIDE[@]}"; do [ ! -e "$path" ] || echo "$path" >>"$STATE/outside-existed"; done
}

up() {
  install
  if engine_answers; then
    if [ -f "$STATE/dockerd.pid" ]; then say "our engine is already running"; else
      say "an engine already answers on $SOCKET: using it, it will be left running"
      mkdir -p "$STATE" && touch "$STATE/external"
    fi
    echo "unix://$SOCKET"
    return
  fi
  if [ -e "$STATE/dockerd.pid" ]; then
    # an interrupted run (killed before its `down`): its record says what to put back, then the
    # machine is as that run found it
    say "$STATE holds an interrupted run (its engine does not answer): putting the machine back first"
    down
  fi
  save_state
  mkdir -p "$DATA_ROOT"
  say "starting dockerd (data root $DATA_ROOT)"
  # as docker.service does (LimitNOFILE=infinity): containers may ask for more than a login shell
  # has (Elasticsearch's nofile 65535 in stack.yml)
  ulimit -n "$(cat /proc/sys/fs/nr_open)" 2>/dev/null || true
  # setsid: its own session, so a Ctrl-C of the test does not reach it before `down` does
  setsid dockerd --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" --host "unix://$SOCKET" \
    --pidfile "$STATE/dockerd.pidfile" --log-level warn --storage-driver overlay2 \
    >"$STATE/dockerd.log" 2>&1 </dev/null &
  echo $! >"$STATE/dockerd.pid"
  local deadline=$((SECONDS + 90))
  until engine_answers; do
    kill -0 "$(cat "$STATE/dockerd.pid")" 2>/dev/null || { tail -20 "$STATE/dockerd.log" >&2; die "dockerd exited"; }
    ((SECONDS < deadline)) || { tail -20 "$STATE/dockerd.log" >&2; die "dockerd did not answer in 90 s"; }
    sleep 0.5
  done
  # the containerd dockerd supervises: stopped by its PID too, should dockerd not stop it
  local pidfile=$EXEC_ROOT/containerd/containerd.pid
  [ -s "$pidfile" ] && cp "$pidfile" "$STATE/containerd.pid"
  say "dockerd $(cat "$STATE/dockerd.pid") up ($("$DOCKER" version --format '{{.Server.Version}}'))"
  echo "unix://$SOCKET"
}

# --- down -----------------------------------------------------------------------------------------
# is_running PID NAME: PID is alive and is NAME (a recorded PID of a killed run may since have
# been given to another process, which must not be signalled)
is_running() { [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]; }

stop_pid() { # stop_pid PID NAME SECONDS: SIGTERM, wait, SIGKILL (only while PID is still NAME)
  local pid=$1 name=$2 wait=$3
  is_running "$pid" "$name" || return 0
  say "stopping $name ($pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + wait))
  while is_running "$pid" "$name" && ((SECONDS < deadline)); do sleep 0.5; done
  if is_running "$pid" "$name"; then say "$name ignored SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 1; fi
}

remove_test_objects() { # what a test run makes: the swarm (with its stacks) and their volumes
  engine_answers || return 0
  local stacks
  stacks=$("$DOCKER" stack ls --format '{{.Name}}' 2>/dev/null || true)
  local s
  for s in $stacks; do
    case "$s" in churntest*) "$DOCKER" stack rm "$s" >/dev/null 2>&1 || true ;; esac
  done
  # volumes can only be removed once their containers are gone: a few seconds for the tasks to
  # stop on their own, then the rest are removed by force (their data goes with the volumes: a
  # graceful stop, up to a service's stop_grace_period, would only make the run longer)
  local deadline=$((SECONDS + 10)) left
  while ((SECONDS < deadline)); do
    left=$("$DOCKER" ps -aq --filter label=com.docker.stack.namespace 2>/dev/null | wc -l)
    [ "$left" = 0 ] && break
    sleep 1
  done
  "$DOCKER" ps -aq --filter label=com.docker.stack.namespace | xargs -r "$DOCKER" rm -f >/dev/null 2>&1 || true
  local v
  for v in $("$DOCKER" volume ls -q --filter label=com.docker.stack.namespace 2>/dev/null); do
    case "$v" in churntest*) "$DOCKER" volume rm -f "$v" >/dev/null 2>&1 || true ;; esac
  done
  if [ ! -f "$STATE/external" ] || [ -f "$STATE/swarm-ours" ]; then
    "$DOCKER" swarm leave --force >/dev/null 2>&1 || true
  fi
  # dangling layers of rebuilt images: keep the cache from growing run after run
  "$DOCKER" image prune -f >/dev/null 2>&1 || true
}

unmount_left() {
  local m
  # deepest first
  awk -v a="$DATA_ROOT" -v b="$EXEC_ROOT" '$5 ~ "^"a || $5 ~ "^"b || $5 ~ "^/run/docker" {print $5}' \
    /proc/self/mountinfo | sort -r | while IFS= read -r m; do
    say "unmounting $m"; umount -l "$m" 2>/dev/null || true
  done
}

restore_iptables() {
  local tool t saved
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null || continue
    for t in "${TABLES[@]}"; do
      saved=$STATE/$tool.$t
      [ -f "$saved" ] || continue
      if [ -s "$saved" ]; then
        "$tool-restore" -T "$t" <"$saved"   # replaces the whole table with what it was
      elif "$tool-save" 2>/dev/null | grep -qx "\*$t"; then
        # the table did not exist: empty it, then drop it (nf_tables backend)
        "$tool" -t "$t" -F 2>/dev/null || true
        "$tool" -t "$t" -X 2>/dev/null || true
        if command -v nft >/dev/null; then
          nft delete table "$([ "$tool" = iptables ] && echo ip || echo ip6)" "$t" 2>/dev/null || true
        fi
      fi
    done
  done
}

down() {
  if [ ! -d "$STATE" ]; then say "nothing to stop"; return 0; fi
  remove_test_objects
  if [ -f "$STATE/external" ]; then rm -rf "$STATE"; say "external engine left running"; return 0; fi
  local dockerd containerd
  dockerd=$(cat "$STATE/dockerd.pid" 2>/dev/null || echo)
  containerd=$(cat "$STATE/containerd.pid" 2>/dev/null || echo)
  [ -z "$dockerd" ] || stop_pid "$dockerd" dockerd 60
  [ -z "$containerd" ] || stop_pid "$containerd" containerd 30
  # shims of our containerd (its socket is under EXEC_ROOT) outlive it when a container hung
  local pid
  for pid in $(pgrep -f "containerd-shim.*-address $EXEC_ROOT/containerd" || true); do
    stop_pid "$pid" containerd-shim 10
  done
  unmount_left
  local link
  for link in docker0 docker_gwbridge; do
    ip link show "$link" >/dev/null 2>&1 && { say "deleting $link"; ip link delete "$link"; }
  done
  # veth ends and vxlan devices of the overlay networks, if the engine did not remove them
  for link in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^(veth|vx-)' || true); do
    ip link delete "$link" 2>/dev/null || true
  done
  restore_iptables
  local s v
  while read -r s v; do echo "$v" >"/proc/sys/$s" 2>/dev/null || true; done <"$STATE/sysctl"
  [ -f "$STATE/exec-root-existed" ] || rm -rf "$EXEC_ROOT"
  rm -rf /var/lib/docker/network/files/lb_*  # a swarm's load-balancer sandboxes: ours, stopped
  local path
  for path in "${OUTSIDE[@]}"; do
    grep -qxF "$path" "$STATE/outside-existed" 2>/dev/null || rm -rf "$path"
  done
  rm -f "$SOCKET"
  rm -rf "$STATE"
  say "engine stopped, machine restored"
}

check_clean() {
  local dirty=0
  pgrep -x dockerd >/dev/null && { say "a dockerd is running"; dirty=1; }
  pgrep -f "containerd.*$EXEC_ROOT/containerd" >/dev/null && { say "our containerd is running"; dirty=1; }
  grep -qE "$DATA_ROOT|$EXEC_ROOT" /proc/self/mountinfo && { say "mounts left under the engine's roots"; dirty=1; }
  local link
  for link in docker0 docker_gwbridge; do
    ip link show "$link" >/dev/null 2>&1 && { say "$link still exists"; dirty=1; }
  done
  iptables-save 2>/dev/null | grep -qi docker && { say "docker chains left in iptables"; dirty=1; }
  [ ! -d "$STATE" ] || { say "$STATE left"; dirty=1; }
  compgen -G "/var/lib/docker/network/files/lb_*" >/dev/null && { say "swarm load-balancer files left in /var/lib/docker/network/files"; dirty=1; }
  return $dirty
}

# --- base images ----------------------------------------------------------------------------------
# What Debian's official images (debian:bookworm-slim, under python:3.11-slim) configure and a bare
# debootstrap does not: apt deletes the packages it downloaded and keeps no binary cache (else every
# `apt-get install` of an image build leaves its .deb files in the layer: 143 MB in the db image),
# and dpkg leaves out documentation, manual pages and translations (copyright files are kept).
slim() {
  local root=$1
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CONF
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
CONF
  # what debootstrap already installed, as if those rules had been there
  find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/groff/* "$root"/usr/share/info/* \
    "$root"/usr/share/lintian/* "$root"/usr/share/linda/* "$root"/usr/share/locale/*
  rm -f "$root"/var/cache/apt/*.bin
}

base() {
  engine_answers || die "no engine: run '$0 up' first"
  if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    local tarball=$CACHE/rootfs-${BASE_IMAGE##*:}.tar
    if [ ! -s "$tarball" ]; then
      local rootfs
      rootfs=$(mktemp -d /var/tmp/churnops-rootfs.XXXXXX)
      say "debootstrap $SUITE (minbase + python3) into $rootfs"
      debootstrap --variant=minbase --include=python3,ca-certificates,netbase,tzdata \
        "$SUITE" "$rootfs" "$MIRROR" >"$STATE/debootstrap.log" 2>&1 \
        || { tail -20 "$STATE/debootstrap.log" >&2; rm -rf "$rootfs"; die "debootstrap failed"; }
      # the same interpreter paths as python:3.11-slim (the Dockerfiles name /usr/local/bin/python3.11)
      local name
      for name in python3.11 python3 python; do ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/$name"; done
      # this machine's extra CAs (egress proxy): a build reaches the package index through them
      cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
      chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || true
      slim "$rootfs"
      rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
      mkdir -p "$CACHE"
      find "$CACHE" -maxdepth 1 -name 'rootfs-*.tar' ! -name "${tarball##*/}" -delete  # older recipes
      tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
      rm -rf "$rootfs"
    fi
    say "docker import $BASE_IMAGE"
    "$DOCKER" import \
      --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
      --change 'CMD ["python3"]' "$tarball" "$BASE_IMAGE" >/dev/null
  fi
  if ! "$DOCKER" image inspect "$UV_IMAGE" >/dev/null 2>&1; then
    local dir
    dir=$(mktemp -d)
    say "uv $UV_VERSION image FROM scratch (wheel from PyPI)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
      --platform manylinux_2_17_x86_64 --python-version 3.11 "uv==$UV_VERSION" -d "$dir"
    (cd "$dir" && python3 -m zipfile -e ./*.whl unpacked)
    cp "$dir"/unpacked/uv-*.data/scripts/uv "$dir"/unpacked/uv-*.data/scripts/uvx "$dir/"
    chmod 755 "$dir/uv" "$dir/uvx"
    printf 'FROM scratch\nCOPY uv uvx /\nENTRYPOINT ["/uv"]\n' >"$dir/Dockerfile"
    DOCKER_BUILDKIT=1 "$DOCKER" build -q -t "$UV_IMAGE" "$dir" >/dev/null
    rm -rf "$dir"
  fi
  echo "PYTHON_IMAGE=$BASE_IMAGE"
  echo "UV_IMAGE=$UV_IMAGE"
}

registry_bin() {
  local bin=$CACHE/bin/registry-$REGISTRY_VERSION
  if [ ! -x "$bin" ]; then
    command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
    command -v go >/dev/null || die "go not found (the registry is built from its Go module)"
    mkdir -p "$CACHE/bin"
    say "go install $REGISTRY_MODULE@$REGISTRY_VERSION"
    GOBIN=$CACHE/bin/.tmp go install "$REGISTRY_MODULE@$REGISTRY_VERSION"
    mv "$CACHE/bin/.tmp/registry" "$bin"
    rmdir "$CACHE/bin/.tmp"
  fi
  echo "$bin"
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down ;;
  check-clean) check_clean ;;
  base) base ;;
  registry-bin) registry_bin ;;
  *) sed -n '2,19p' "$0" >&2; exit 2 ;;
esac
