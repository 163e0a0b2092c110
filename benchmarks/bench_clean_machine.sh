#!/usr/bin/env bash
# The README's two commands on a clean machine, as an ordinary user: no root, no sudo, a Docker
# engine with no images, an empty home (no ~/.cache/harness, no venv), a fresh clone of this commit.
#
# Run it as root on a disposable Debian or Ubuntu host with Docker installed (root is needed only to
# set the stage: the user, and a second, private Docker engine with its own data root and its own
# bridge, harness-clean0, so that the host engine's images, caches and docker0 are not touched). Then, as the user `harness-clean`, a member only of the private engine's socket
# group (the `docker` group of that engine):
#     git clone; make demo; make test
# and prints each command's wall time and exit status, and the disk taken: the clone's .venv, the
# harness cache (phantoms, wheels, debootstrap/fakeroot fetched from Debian), the results, and the
# engine's images.
#
#   sudo benchmarks/bench_clean_machine.sh [--demo-only] [--keep]
#
# --demo-only skips `make test`; --keep leaves the user, the engine and its data for inspection.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
USER_NAME=harness-clean
GROUP=harness-clean-docker
STATE=/var/lib/harness-clean
SOCK=/run/harness-clean/docker.sock
DEMO_ONLY=0
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --demo-only) DEMO_ONLY=1 ;;
    --keep) KEEP=1 ;;
    *) echo "usage: sudo $0 [--demo-only] [--keep]" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "bench_clean_machine.sh: run it as root: it creates a user and a private Docker engine (the measured commands run as that user)" >&2
  exit 2
fi

BRIDGE=harness-clean0  # the private engine's own bridge: `--bridge none` would delete the host engine's docker0

cleanup() {
  if [ "$KEEP" = 1 ]; then echo "kept: user $USER_NAME, engine $SOCK, data $STATE"; return; fi
  [ -f /run/harness-clean/dockerd.pid ] && kill "$(cat /run/harness-clean/dockerd.pid)" 2>/dev/null || true
  sleep 3
  ip link delete "$BRIDGE" 2>/dev/null || true
  rm -rf "$STATE" /run/harness-clean
  userdel -r "$USER_NAME" 2>/dev/null || true
  groupdel "$GROUP" 2>/dev/null || true
}
trap cleanup EXIT

# --- the stage (root) ---
getent group "$GROUP" >/dev/null || groupadd "$GROUP"
id "$USER_NAME" >/dev/null 2>&1 && userdel -r "$USER_NAME" 2>/dev/null
useradd --create-home --shell /bin/bash --groups "$GROUP" "$USER_NAME"
mkdir -p "$STATE/docker" /run/harness-clean/exec
driver="$(docker info --format '{{.Driver}}' 2>/dev/null || echo overlay2)"
ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
ip addr replace 10.251.0.1/24 dev "$BRIDGE"
ip link set "$BRIDGE" up
printf '{"storage-driver": "%s"}\n' "$driver" > /run/harness-clean/daemon.json
dockerd --config-file /run/harness-clean/daemon.json --data-root "$STATE/docker" \
  --exec-root /run/harness-clean/exec --pidfile /run/harness-clean/dockerd.pid -H "unix://$SOCK" \
  --group "$GROUP" --bridge "$BRIDGE" --iptables=false --ip6tables=false \
  --containerd-namespace harness-clean --containerd-plugins-namespace harness-clean-plugins \
  > /run/harness-clean/dockerd.log 2>&1 &
for _ in $(seq 60); do [ -S "$SOCK" ] && DOCKER_HOST="unix://$SOCK" docker info >/dev/null 2>&1 && break; sleep 1; done
DOCKER_HOST="unix://$SOCK" docker info >/dev/null || { tail -5 /run/harness-clean/dockerd.log; exit 1; }
home="$(getent passwd "$USER_NAME" | cut -d: -f6)"
git clone --quiet --no-local "$REPO" "$home/harness"
chown -R "$USER_NAME:$USER_NAME" "$home/harness"
commit="$(git -C "$REPO" rev-parse --short HEAD)"  # what the clone holds

as_user() {  # a login shell of the user: its own PATH, HOME and groups, nothing of root's
  su - "$USER_NAME" -c "export DOCKER_HOST=unix://$SOCK; cd ~/harness && $1"
}
echo "clean machine: user $(as_user 'id') ; engine $(DOCKER_HOST="unix://$SOCK" docker images -q | wc -l) images; commit $commit"

timed() {  # name, command: prints the wall time and the exit status, keeps the log
  local start end status
  start=$(date +%s)
  set +e
  as_user "$2" > "$STATE/$1.log" 2>&1
  status=$?
  set -e
  end=$(date +%s)
  printf '%-10s exit %-3s %4d min %02d s   (log: %s)\n' "$1" "$status" $(((end - start) / 60)) $(((end - start) % 60)) "$STATE/$1.log" \
    | tee -a "$STATE/summary.txt"
  tail -3 "$STATE/$1.log" | sed 's/^/    /'
  return 0
}

: > "$STATE/summary.txt"
timed "make-demo" "make demo"
[ "$DEMO_ONLY" = 1 ] || timed "make-test" "make test"

size() { du -sh "$1" 2>/dev/null | cut -f1; }
{
  echo "disk: .venv $(size "$home/harness/.venv"), harness cache $(size "$home/.cache/harness")" \
       "(tools $(size "$home/.cache/harness/tools"), wheels $(size "$home/.cache/harness/wheelhouse")), results $(size "$home/harness/results")," \
       "Docker engine data $(size "$STATE/docker")"
  DOCKER_HOST="unix://$SOCK" docker images --format '  {{.Repository}}:{{.Tag}} {{.Size}}'
} | tee -a "$STATE/summary.txt"
if [ "$KEEP" != 1 ]; then  # the engine's data goes with the cleanup; the summary and logs stay
  for f in "$STATE"/*.txt "$STATE"/*.log; do cp "$f" "/tmp/harness-clean-machine-$commit-$(basename "$f")"; done
  echo "summary and logs: /tmp/harness-clean-machine-$commit-*"
fi
