#!/bin/bash
# Container networking, skiffd next to Debian's dockerd in one run, with the same busybox image
# and the same docker CLI:
#   - throughput container -> container over each engine's bridge (one TCP connection),
#   - throughput host -> published port (127.0.0.1; both engines relay it in userland:
#     skiffd's proxy threads, dockerd's docker-proxy),
#   - latency of a new connection with one request and answer: host -> published port, and
#     container -> container,
# with bench/netload.rs (std-only Rust, built static with rustc here) on both ends.
#   - what networking adds to `docker run --rm` (default bridge vs `--network none`).
# Prints medians per engine and the ratio skiff/docker. Run as root on Debian 12.
#
#   bench/network.sh                         # builds skiffd + skiff-monitor (cargo, release)
#   SKIFFD=/path/to/skiffd bench/network.sh  # skiff-monitor must sit next to it
#   ROUNDS=5 MIB=4096 bench/network.sh
#
# Environment: ROUNDS (3), MIB (2048: MiB per throughput sample), REQS (2000: requests per
# latency round), STARTS (20: runs per start-cost sample), BENCH_DIR (/var/tmp/skiff-bench),
# CARGO_TARGET_DIR.
#
# Both daemons are private: own data root, exec root, socket, pid file, bridge and subnet
# (dockerd: docker0 on 10.239.1.0/24, --iptables=false, so published ports go through
# docker-proxy as skiffd's go through its proxy; skiffd: device prefix "skbn", 10.239.2.0/24).
# Both are stopped at the end and their bridges removed. Traffic stays on this machine.
set -eu
set -o pipefail

ROUNDS=${ROUNDS:-3}
MIB=${MIB:-2048}
REQS=${REQS:-2000}
STARTS=${STARTS:-20}
BENCH_DIR=${BENCH_DIR:-/var/tmp/skiff-bench}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

die() { echo "bench/network.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }
case "${1:-}" in -h|--help) sed -n '2,/^set -eu$/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
[ "$(id -u)" = 0 ] || die "run as root (daemons, bridges)"
for c in dockerd docker busybox python3 nft ip rustc; do
    command -v "$c" >/dev/null || die "$c is missing (apt-get install docker.io busybox-static python3 nftables iproute2)"
done
ip link show docker0 >/dev/null 2>&1 && die "a docker0 bridge exists already: stop the system's dockerd first"

if [ -z "${SKIFFD:-}" ]; then
    say "building skiffd and skiff-monitor (release)"
    (cd "$repo" && cargo build --release -q -p skiff-daemon -p skiff-monitor)
    SKIFFD=${CARGO_TARGET_DIR:-$repo/target}/release/skiffd
fi
[ -x "$SKIFFD" ] && [ -x "$(dirname "$SKIFFD")/skiff-monitor" ] || die "no skiffd/skiff-monitor at $SKIFFD"

mkdir -p "$BENCH_DIR/runs"
RUN=$(mktemp -d "$BENCH_DIR/runs/net.XXXXXX")
# exec roots and sockets on a short path: unix socket paths are limited to 108 bytes
EXE=$(mktemp -d /run/skn.XXXX)
DOCKERD_PID="" SKIFFD_PID=""
stop_pid() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    set +e
    for e in docker skiff; do
        ids=$(eng "$e" ps -aq 2>/dev/null)
        [ -z "$ids" ] || eng "$e" rm -f $ids >/dev/null 2>&1
    done
    stop_pid "$DOCKERD_PID"
    stop_pid "$SKIFFD_PID"
    ip link del docker0 2>/dev/null
    mkdir -p "$BENCH_DIR/logs"
    cp "$RUN/docker/log" "$BENCH_DIR/logs/dockerd.log"
    cp "$RUN/skiff/log" "$BENCH_DIR/logs/skiffd.log"
    grep -e " $RUN/" -e " $EXE/" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf --one-file-system "$RUN" "$EXE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eng() { # engine args...: the docker CLI against one of the daemons
    local e=$1; shift
    env -u DOCKER_HOST -u DOCKER_CONTEXT DOCKER_CONFIG="$RUN/cli" docker -H "unix://$EXE/$e/d.sock" "$@"
}
wait_up() { # engine pid log
    for _ in $(seq 300); do
        eng "$1" version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || { tail -n 30 "$3" >&2; die "$1 daemon exited"; }
        sleep 0.2
    done
    tail -n 30 "$3" >&2; die "$1 daemon did not come up"
}

mkdir -p "$RUN/docker" "$RUN/skiff" "$RUN/cli" "$EXE/docker" "$EXE/skiff"
printf '{"deprecated-key-path": "%s"}\n' "$RUN/docker/key.json" >"$RUN/docker/daemon.json"
setsid dockerd --config-file "$RUN/docker/daemon.json" --data-root "$RUN/docker/data" \
    --exec-root "$EXE/d" --pidfile "$EXE/docker/docker.pid" -H "unix://$EXE/docker/d.sock" \
    --bip 10.239.1.1/24 --iptables=false --ip6tables=false --ip-masq=false \
    --storage-driver=overlay2 </dev/null >"$RUN/docker/log" 2>&1 &
DOCKERD_PID=$!
printf '{"bip": "10.239.2.1/24", "network-prefix": "skbn"}\n' >"$RUN/skiff/daemon.json"
RUST_LOG=${SKIFF_LOG:-info} setsid "$SKIFFD" --config-file "$RUN/skiff/daemon.json" --data-root "$RUN/skiff/data" \
    --exec-root "$EXE/s" -H "unix://$EXE/skiff/d.sock" </dev/null >"$RUN/skiff/log" 2>&1 &
SKIFFD_PID=$!
wait_up docker "$DOCKERD_PID" "$RUN/docker/log"
wait_up skiff "$SKIFFD_PID" "$RUN/skiff/log"
say "dockerd $(eng docker version --format '{{.Server.Version}}'), skiffd $(eng skiff version --format '{{.Server.Version}}')"

# The image: busybox-static with every applet, imported into both.
IMG=bench/busybox:net
R=$RUN/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev"
cp "$(readlink -f "$(command -v busybox)")" "$R/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
NETLOAD=$RUN/netload
rustc -O -C target-feature=+crt-static -o "$NETLOAD" "$here/netload.rs" || die "cannot build bench/netload.rs"
cp "$NETLOAD" "$R/bin/netload"
for e in docker skiff; do
    tar -C "$R" -c . | eng "$e" import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$IMG" >/dev/null
done

RES=$RUN/results
: >"$RES"
rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES"; } # metric engine value

listening() { # engine container port
    for _ in $(seq 100); do
        eng "$1" exec "$2" sh -c "netstat -ltn | grep -q ':$3 '" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench/network.sh: $1: nothing listens on $2:$3" >&2
    kill -TERM $$
    exit 1
}

c2c_throughput() { # engine -> MB/s, one connection between two containers on the bridge
    local e=$1 ip
    eng "$e" run -d --name srv "$IMG" netload sink 5001 >/dev/null
    listening "$e" srv 5001
    ip=$(eng "$e" inspect -f '{{.NetworkSettings.IPAddress}}' srv)
    eng "$e" run --rm "$IMG" netload send "$ip:5001" "$MIB"
    eng "$e" rm -f srv >/dev/null
}

host_throughput() { # engine -> MB/s, one connection from the host to the published port
    local e=$1 port
    eng "$e" run -d --name srv -p 127.0.0.1::5001 "$IMG" netload sink 5001 >/dev/null
    listening "$e" srv 5001
    port=$(eng "$e" port srv 5001/tcp | head -n1 | sed 's/.*://')
    "$NETLOAD" send "127.0.0.1:$port" "$MIB"
    eng "$e" rm -f srv >/dev/null
}

host_latency() { # engine -> "median p99" µs of a request on a new connection to the published port
    local e=$1 port
    eng "$e" run -d --name web -p 127.0.0.1::80 "$IMG" netload http 80 >/dev/null
    listening "$e" web 80
    port=$(eng "$e" port web 80/tcp | head -n1 | sed 's/.*://')
    "$NETLOAD" rr "127.0.0.1:$port" "$REQS"
    eng "$e" rm -f web >/dev/null
}

c2c_latency() { # engine -> "median p99" µs of a request on a new connection, container to container
    local e=$1 ip
    eng "$e" run -d --name web "$IMG" netload http 80 >/dev/null
    listening "$e" web 80
    ip=$(eng "$e" inspect -f '{{.NetworkSettings.IPAddress}}' web)
    eng "$e" run --rm "$IMG" netload rr "$ip:80" "$REQS"
    eng "$e" rm -f web >/dev/null
}

start_cost() { # engine network -> median ms of `docker run --rm` (true)
    local e=$1 net=$2
    python3 - "$STARTS" "$EXE/$e/d.sock" "$net" "$IMG" "$RUN/cli" <<'EOF'
import os, statistics, subprocess, sys, time
n, sock, net, img, cli = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
env["DOCKER_CONFIG"] = cli
args = ["docker", "-H", f"unix://{sock}", "run", "--rm"] + (["--network", net] if net != "default" else []) + [img, "true"]
subprocess.run(args, env=env, check=True)
ts = []
for _ in range(n):
    t = time.perf_counter()
    subprocess.run(args, env=env, check=True)
    ts.append((time.perf_counter() - t) * 1000)
print(f"{statistics.median(ts):.1f}")
EOF
}

for r in $(seq "$ROUNDS"); do
    # alternate which engine goes first
    if [ $((r % 2)) = 1 ]; then order="skiff docker"; else order="docker skiff"; fi
    for e in $order; do
        say "round $r/$ROUNDS: $e"
        rec c2c_mbps "$e" "$(c2c_throughput "$e")"
        rec host_mbps "$e" "$(host_throughput "$e")"
        read -r med p99 <<<"$(host_latency "$e")"
        rec host_lat_us "$e" "$med"
        rec host_lat_p99_us "$e" "$p99"
        read -r med p99 <<<"$(c2c_latency "$e")"
        rec c2c_lat_us "$e" "$med"
        rec c2c_lat_p99_us "$e" "$p99"
        none=$(start_cost "$e" none)
        bridge=$(start_cost "$e" default)
        rec run_none_ms "$e" "$none"
        rec run_bridge_ms "$e" "$bridge"
        rec net_setup_ms "$e" "$(python3 -c "print(f'{$bridge - $none:.1f}')")"
    done
done

python3 - "$RES" "$ROUNDS" "$MIB" "$REQS" "$STARTS" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    m, e, v = line.split("\t")
    rows[m][e].append(float(v))
names = {
    "c2c_mbps": "container->container throughput, MB/s (higher is better)",
    "host_mbps": "host->published port (127.0.0.1) throughput, MB/s",
    "host_lat_us": "host->published port, connect+request+close, median µs",
    "host_lat_p99_us": "host->published port, connect+request+close, p99 µs",
    "c2c_lat_us": "container->container, connect+request+close, median µs",
    "c2c_lat_p99_us": "container->container, connect+request+close, p99 µs",
    "run_none_ms": "docker run --rm --network none true, median ms",
    "run_bridge_ms": "docker run --rm (bridge) true, median ms",
    "net_setup_ms": "networking added to run (bridge - none), ms",
}
print(f"rounds {sys.argv[2]}, {sys.argv[3]} MiB per throughput sample, {sys.argv[4]} requests per latency sample, {sys.argv[5]} runs per start sample; medians over rounds")
print(f"{'metric':58} {'skiff':>9} {'docker':>9} {'skiff/docker':>12}")
for m, title in names.items():
    s = statistics.median(rows[m]["skiff"])
    d = statistics.median(rows[m]["docker"])
    ratio = f"{s / d:.2f}" if d else "-"
    print(f"{title:58} {s:9.1f} {d:9.1f} {ratio:>12}")
print("per round (skiff / docker):")
for m in names:
    print(f"  {m}: " + ", ".join(f"{s:g} / {d:g}" for s, d in zip(rows[m]["skiff"], rows[m]["docker"])))
EOF
