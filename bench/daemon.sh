#!/bin/bash
# The same docker CLI commands against skiffd and against Debian's dockerd (20.10, containerd,
# runc), side by side in one run: `run --rm busybox true`, `exec`, `ps -a` with many containers,
# `logs` of 50 MB, and the engine's own memory per idle container (PSS of skiffd + its
# skiff-monitors vs dockerd + containerd + its shims). Prints medians and skiff/docker ratios.
# For run and exec it also times the docker CLI against bench/cli-floor.py, a stand-in server
# that answers at once without running anything: the CLI's own floor, which bounds the ratio
# any daemon can reach on this machine.
# Run as root on Debian 12; missing packages are installed with apt-get.
#
#   bench/daemon.sh                       # builds skiffd and skiff-monitor (cargo, release)
#   SKIFF_BIN_DIR=/path/to/release bench/daemon.sh
#   RUNS=30 PS_CONTAINERS=1000 IDLE=50 LOG_MB=50 bench/daemon.sh
#   bench/daemon.sh --only run,exec       # a subset: run, exec, ps, logs, memory
#
# Both daemons get private data roots, exec roots and sockets under $BENCH_DIR and are stopped
# at the end. Containers run with `--network none` on both sides (dockerd is started without a
# bridge or iptables rules, so the host's firewall is never touched; bench/network.sh measures
# networking). hyperfine runs the two commands of each pair in one invocation (its runs are
# alternated per command, not interleaved), after warm-up runs.
set -eu
set -o pipefail

RUNS=${RUNS:-30}
PS_CONTAINERS=${PS_CONTAINERS:-1000}
IDLE=${IDLE:-50}
LOG_MB=${LOG_MB:-50}
ONLY=run,exec,ps,logs,memory
BENCH_DIR=${BENCH_DIR:-/var/tmp/skiff-bench-daemon}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

usage() { sed -n '2,/^set -eu$/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "bench/daemon.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --only) [ $# -ge 2 ] || die "--only needs a value"; ONLY=$2; shift 2 ;;
        --only=*) ONLY=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
has() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
for n in RUNS PS_CONTAINERS IDLE LOG_MB; do
    case "${!n}" in ''|*[!0-9]*|0) die "$n must be a positive number" ;; esac
done
[ "$(id -u)" = 0 ] || die "run as root (containers, cgroups, two daemons)"

# --- packages -----------------------------------------------------------------------------------
apt_install() { # policy-rc.d keeps the packages' init scripts from starting a system dockerd
    local pol=/usr/sbin/policy-rc.d made=0
    if [ ! -e "$pol" ]; then printf '#!/bin/sh\nexit 101\n' >"$pol"; chmod 755 "$pol"; made=1; fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; then
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null || { [ "$made" = 0 ] || rm -f "$pol"; return 1; }
    fi
    [ "$made" = 0 ] || rm -f "$pol"
}
missing=""
want() { command -v "$1" >/dev/null 2>&1 || missing="$missing $2"; }
want hyperfine hyperfine
want python3 python3
want busybox busybox-static
want dockerd docker.io
want containerd containerd
want runc runc
if [ -n "$missing" ]; then
    say "installing:$missing"
    # shellcheck disable=SC2086
    apt_install $missing || die "apt-get install$missing failed"
fi

# --- skiff binaries -----------------------------------------------------------------------------
if [ -z "${SKIFF_BIN_DIR:-}" ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo is missing (https://rustup.rs), or set SKIFF_BIN_DIR"
    say "cargo build --release -p skiff-daemon -p skiff-monitor"
    (cd "$repo" && cargo build --release --quiet -p skiff-daemon -p skiff-monitor) || die "cargo build failed"
    SKIFF_BIN_DIR=${CARGO_TARGET_DIR:-$repo/target}/release
fi
[ -x "$SKIFF_BIN_DIR/skiffd" ] && [ -x "$SKIFF_BIN_DIR/skiff-monitor" ] ||
    die "no skiffd and skiff-monitor in $SKIFF_BIN_DIR"
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker) || die "no docker client"

RUN=$BENCH_DIR/run
S=$RUN/skiff
D=$RUN/docker
SKIFFD_PID=""
DOCKERD_PID=""
unmount_under() { # dir: lazily unmounts everything mounted below it, deepest first
    awk -v p="$1/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
stop_pid() { # pid: SIGTERM, then SIGKILL after 20 s
    local p=$1 i
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null || return 0
    for i in $(seq 200); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
}
cleanup() {
    set +e
    if [ -n "$SKIFFD_PID" ]; then sk rm -f $(sk ps -aq) >/dev/null 2>&1; fi
    if [ -n "$DOCKERD_PID" ]; then dk rm -f $(dk ps -aq) >/dev/null 2>&1; fi
    stop_pid "$SKIFFD_PID"
    stop_pid "$DOCKERD_PID"
    [ -z "${FLOOR_PID:-}" ] || kill "$FLOOR_PID" 2>/dev/null
    # dockerd's own containerd, and any monitor left behind
    pkill -f "containerd --config $D/exec" 2>/dev/null
    pkill -f "skiff-monitor.*$S/" 2>/dev/null
    sleep 0.5
    unmount_under "$RUN"
    rm -rf --one-file-system "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup
mkdir -p "$S/cli" "$D/cli"

sk() { env -u DOCKER_HOST -u DOCKER_CONTEXT DOCKER_CONFIG="$S/cli" "$DOCKER" -H "unix://$S/skiff.sock" "$@"; }
dk() { env -u DOCKER_HOST -u DOCKER_CONTEXT DOCKER_CONFIG="$D/cli" "$DOCKER" -H "unix://$D/docker.sock" "$@"; }

# --- the daemons ----------------------------------------------------------------------------------
echo '{}' >"$S/daemon.json"
setsid "$SKIFF_BIN_DIR/skiffd" -H "unix://$S/skiff.sock" --data-root "$S/data" --exec-root "$S/exec" \
    --config-file "$S/daemon.json" </dev/null >"$S/skiffd.log" 2>&1 &
SKIFFD_PID=$!
printf '{"deprecated-key-path": "%s"}\n' "$D/key.json" >"$D/daemon.json"
setsid dockerd --config-file "$D/daemon.json" --data-root "$D/data" --exec-root "$D/exec" \
    --pidfile "$D/docker.pid" -H "unix://$D/docker.sock" \
    --iptables=false --ip6tables=false --ip-masq=false --bridge=none --userland-proxy=false \
    --storage-driver=overlay2 </dev/null >"$D/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 300); do
    sk version >/dev/null 2>&1 && dk version >/dev/null 2>&1 && break
    kill -0 "$SKIFFD_PID" 2>/dev/null || { tail -n 20 "$S/skiffd.log" >&2; die "skiffd exited"; }
    kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -n 20 "$D/dockerd.log" >&2; die "dockerd exited"; }
    sleep 0.2
done
sk version >/dev/null && dk version >/dev/null || die "a daemon did not come up"
say "skiffd $(sk version --format '{{.Server.Version}}') (pid $SKIFFD_PID), dockerd $(dk version --format '{{.Server.Version}}') (pid $DOCKERD_PID)"

# --- the image: busybox-static with every applet, imported into both ------------------------------
R=$RUN/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev" "$R/root"
cp "$(command -v busybox)" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
for e in sk dk; do
    tar --numeric-owner -C "$R" -c . | $e import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - bench/busybox:1 >/dev/null
done
IMG=bench/busybox:1
NONE=(--network none)

# --- measurements ---------------------------------------------------------------------------------
declare -A MED
FLC="env -u DOCKER_HOST DOCKER_CONFIG=$S/cli $DOCKER -H unix://$RUN/floor.sock"
FLOOR_PID=""
if has run || has exec || has ps; then
    setsid python3 "$here/cli-floor.py" "$RUN/floor.sock" "$RUN/ps-list.json" </dev/null >"$RUN/floor.log" 2>&1 &
    FLOOR_PID=$!
    for _ in $(seq 50); do [ -S "$RUN/floor.sock" ] && break; sleep 0.1; done
fi
# pair NAME SKIFF_CMD DOCKER_CMD [FLOOR_CMD]: hyperfine them in one invocation, record the
# medians (ms)
pair() {
    local name=$1 j=$RUN/$1.json
    local extra=()
    [ -z "${4:-}" ] || extra=(-n "floor $name" "$4")
    hyperfine -N --style basic --warmup 3 --runs "$RUNS" --export-json "$j" \
        -n "skiff $name" "$2" -n "docker $name" "$3" "${extra[@]}" >&2 ||
        die "hyperfine failed for $name (run the command by hand to see why)"
    read -r MED[skiff_$name] MED[docker_$name] floor_med < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"]
print(" ".join("%.1f" % (x["median"] * 1000) for x in r))' "$j")
    [ -z "${4:-}" ] || MED[floor_$name]=$floor_med
}
SKC="env -u DOCKER_HOST DOCKER_CONFIG=$S/cli $DOCKER -H unix://$S/skiff.sock"
DKC="env -u DOCKER_HOST DOCKER_CONFIG=$D/cli $DOCKER -H unix://$D/docker.sock"

if has run; then
    say "run --rm $IMG true"
    pair run "$SKC run --rm ${NONE[*]} $IMG true" "$DKC run --rm ${NONE[*]} $IMG true" \
        "$FLC run --rm ${NONE[*]} $IMG true"
    pair cli "$SKC version --format {{.Server.Version}}" "$DKC version --format {{.Server.Version}}"
fi
if has exec; then
    say "exec into a running container"
    sk run -d --name bench-exec "${NONE[@]}" "$IMG" sleep 1d >/dev/null
    dk run -d --name bench-exec "${NONE[@]}" "$IMG" sleep 1d >/dev/null
    pair exec "$SKC exec bench-exec true" "$DKC exec bench-exec true" "$FLC exec bench-exec true"
    sk rm -f bench-exec >/dev/null
    dk rm -f bench-exec >/dev/null
fi
if has logs; then
    say "logs of $LOG_MB MB"
    line=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd
    for e in sk dk; do
        $e run -d --name bench-logs "${NONE[@]}" "$IMG" sh -c "yes $line | head -c ${LOG_MB}000000" >/dev/null
        $e wait bench-logs >/dev/null
    done
    pair logs "sh -c '$SKC logs bench-logs >/dev/null'" "sh -c '$DKC logs bench-logs >/dev/null'"
    # both must have kept every byte
    for e in sk dk; do
        n=$($e logs bench-logs | wc -c)
        [ "$n" -ge "${LOG_MB}000000" ] || die "$e logs returned $n bytes, expected ${LOG_MB}000000"
        $e rm -f bench-logs >/dev/null
    done
fi
if has ps; then
    say "ps -a with $PS_CONTAINERS created containers (creating them: a minute or two)"
    for e in sk dk; do
        seq "$PS_CONTAINERS" | xargs -P 4 -I{} env -u DOCKER_HOST \
            DOCKER_CONFIG="$RUN/$([ $e = sk ] && echo skiff || echo docker)/cli" "$DOCKER" \
            -H "unix://$RUN/$([ $e = sk ] && echo skiff/skiff.sock || echo docker/docker.sock)" \
            create "${NONE[@]}" --name "bench-ps-{}" "$IMG" true >/dev/null
        n=$($e ps -aq | wc -l)
        [ "$n" -ge "$PS_CONTAINERS" ] || die "$e has $n containers, expected $PS_CONTAINERS"
    done
    # The floor for ps: the CLI reading a canned copy of skiffd's own answer.
    python3 - "$S/skiff.sock" "$RUN/ps-list.json" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"GET /v1.47/containers/json?all=1 HTTP/1.0\r\nHost: d\r\n\r\n")
data = b""
while chunk := s.recv(1 << 20):
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
if b" 200 " not in head.split(b"\r\n")[0]:
    sys.exit("cannot list skiffd's containers: " + head.decode(errors="replace"))
open(sys.argv[2], "wb").write(body)
PY
    pair ps "sh -c '$SKC ps -a >/dev/null'" "sh -c '$DKC ps -a >/dev/null'" "sh -c '$FLC ps -a >/dev/null'"
    for e in sk dk; do $e container prune -f >/dev/null; done
fi

# pss PID...: the summed PSS (kB) of the given processes
pss() { local t=0 p v; for p in "$@"; do v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0); t=$((t + ${v:-0})); done; echo "$t"; }
# the engine's processes: skiffd + skiff-monitors / dockerd + containerd + shims
skiff_pids() { echo "$SKIFFD_PID"; pgrep -f "skiff-monitor" | while read -r p; do grep -qs "$S/" "/proc/$p/cmdline" && echo "$p"; done; true; }
docker_pids() { echo "$DOCKERD_PID"; pgrep -f "containerd" | while read -r p; do tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "$D/exec\|moby" && echo "$p"; done; true; }
if has memory; then
    say "memory: $IDLE idle containers each"
    sync; echo 1 >/proc/sys/vm/drop_caches 2>/dev/null || true
    declare -A MEM0 MEM1
    for e in sk dk; do
        f=$([ $e = sk ] && echo skiff_pids || echo docker_pids)
        $e run -d --name bench-warm "${NONE[@]}" "$IMG" sleep 1d >/dev/null; $e rm -f bench-warm >/dev/null
        sleep 1
        # shellcheck disable=SC2046
        MEM0[$e]=$(pss $($f))
        for i in $(seq "$IDLE"); do $e run -d --name "bench-idle-$i" "${NONE[@]}" "$IMG" sleep 1d >/dev/null; done
        sleep 2
        # shellcheck disable=SC2046
        MEM1[$e]=$(pss $($f))
        say "  $e: engine PSS $((MEM0[$e] / 1024)) MiB idle, $((MEM1[$e] / 1024)) MiB with $IDLE containers ($($f | wc -l) processes)"
        $e rm -f $(seq -f "bench-idle-%g" "$IDLE") >/dev/null
    done
    MED[skiff_mem]=$(python3 -c "print('%.2f' % ((${MEM1[sk]} - ${MEM0[sk]}) / 1024 / $IDLE))")
    MED[docker_mem]=$(python3 -c "print('%.2f' % ((${MEM1[dk]} - ${MEM0[dk]}) / 1024 / $IDLE))")
fi

# --- summary --------------------------------------------------------------------------------------
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.2f' % (a / b) if b else '-')" "$1" "$2"; }
echo
printf '%-40s %12s %12s %8s %8s\n' measurement skiffd dockerd ratio target
row() { # key label unit target
    [ -n "${MED[skiff_$1]:-}" ] || return 0
    printf '%-40s %10s %s %10s %s %8s %8s\n' "$2" "${MED[skiff_$1]}" "$3" "${MED[docker_$1]}" "$3" \
        "$(ratio "${MED[skiff_$1]}" "${MED[docker_$1]}")" "$4"
}
row cli "docker version (CLI cost, median)" ms -
row run "run --rm busybox true (median)" ms 0.10
row exec "exec true (median)" ms 0.20
row ps "ps -a, $PS_CONTAINERS containers (median)" ms 0.50
row logs "logs, $LOG_MB MB (median)" ms 0.10
row mem "engine PSS per idle container" MiB "0.3MiB"
# The floor: the same CLI command against a server that does nothing. Its ratio to dockerd is
# the best any daemon could show here; "above floor" is what the daemons themselves add.
for k in run exec ps; do
    [ -n "${MED[floor_$k]:-}" ] && [ -n "${MED[docker_$k]:-}" ] || continue
    printf '%-40s %10s ms %10s ms %8s %8s\n' "$k: docker CLI floor (no daemon work)" "${MED[floor_$k]}" "${MED[floor_$k]}" \
        "$(ratio "${MED[floor_$k]}" "${MED[docker_$k]}")" "(best)"
    a=$(python3 -c "print('%.1f' % max(0.0, ${MED[skiff_$k]} - ${MED[floor_$k]}))")
    b=$(python3 -c "print('%.1f' % max(0.0, ${MED[docker_$k]} - ${MED[floor_$k]}))")
    printf '%-40s %10s ms %10s ms %8s %8s\n' "$k: daemon time above the floor" "$a" "$b" "$(ratio "$a" "$b")" -
done
