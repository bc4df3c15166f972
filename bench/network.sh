#!/bin/bash
# Container networking, skiffd next to Debian's dockerd in one run, with the same busybox image
# and the same docker CLI:
#   - throughput container -> container (busybox nc over each engine's bridge),
#   - throughput host -> published port (127.0.0.1; both engines relay it in userland:
#     skiffd's proxy threads, dockerd's docker-proxy),
#   - latency of one HTTP request to busybox httpd: host -> published port, and
#     container -> container,
#   - what networking adds to `docker run --rm` (default bridge vs `--network none`).
# Prints medians per engine and the ratio skiff/docker. Run as root on Debian 12.
#
#   bench/network.sh                         # builds skiffd + skiff-monitor (cargo, release)
#   SKIFFD=/path/to/skiffd bench/network.sh  # skiff-monitor must sit next to it
#   ROUNDS=5 MIB=4096 bench/network.sh
#
# Environment: ROUNDS (3), MIB (2048: bytes per throughput round), REQS (500: requests per
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
REQS=${REQS:-500}
STARTS=${STARTS:-20}
BENCH_DIR=${BENCH_DIR:-/var/tmp/skiff-bench}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

die() { echo "bench/network.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }
case "${1:-}" in -h|--help) sed -n '2,/^set -eu$/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
[ "$(id -u)" = 0 ] || die "run as root (daemons, bridges)"
for c in dockerd docker busybox python3 nft ip; do
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
    grep " $RUN/" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf --one-file-system "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eng() { # engine args...: the docker CLI against one of the daemons
    local e=$1; shift
    env -u DOCKER_HOST -u DOCKER_CONTEXT DOCKER_CONFIG="$RUN/cli" docker -H "unix://$RUN/$e/d.sock" "$@"
}
wait_up() { # engine pid log
    for _ in $(seq 300); do
        eng "$1" version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || { tail -n 30 "$3" >&2; die "$1 daemon exited"; }
        sleep 0.2
    done
    tail -n 30 "$3" >&2; die "$1 daemon did not come up"
}

mkdir -p "$RUN/docker" "$RUN/skiff" "$RUN/cli"
printf '{"deprecated-key-path": "%s"}\n' "$RUN/docker/key.json" >"$RUN/docker/daemon.json"
setsid dockerd --config-file "$RUN/docker/daemon.json" --data-root "$RUN/docker/data" \
    --exec-root "$RUN/docker/exec" --pidfile "$RUN/docker/docker.pid" -H "unix://$RUN/docker/d.sock" \
    --bip 10.239.1.1/24 --iptables=false --ip6tables=false --ip-masq=false \
    --storage-driver=overlay2 </dev/null >"$RUN/docker/log" 2>&1 &
DOCKERD_PID=$!
printf '{"bip": "10.239.2.1/24", "network-prefix": "skbn"}\n' >"$RUN/skiff/daemon.json"
setsid "$SKIFFD" --config-file "$RUN/skiff/daemon.json" --data-root "$RUN/skiff/data" \
    --exec-root "$RUN/skiff/exec" -H "unix://$RUN/skiff/d.sock" </dev/null >"$RUN/skiff/log" 2>&1 &
SKIFFD_PID=$!
wait_up docker "$DOCKERD_PID" "$RUN/docker/log"
wait_up skiff "$SKIFFD_PID" "$RUN/skiff/log"
say "dockerd $(eng docker version --format '{{.Server.Version}}'), skiffd $(eng skiff version --format '{{.Server.Version}}')"

# The image: busybox-static with every applet, imported into both.
IMG=bench/busybox:net
R=$RUN/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev" "$R/www"
cp "$(readlink -f "$(command -v busybox)")" "$R/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
echo hello >"$R/www/index.html"
for e in docker skiff; do
    tar -C "$R" -c . | eng "$e" import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$IMG" >/dev/null
done

BYTES=$((MIB * 1048576))
COUNT=$((MIB * 16)) # 64 KiB blocks
RES=$RUN/results
: >"$RES"
rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES"; } # metric engine value

# uptime in centiseconds inside a container: busybox date has no %N
UPTIME='read u _ </proc/uptime; echo ${u%.*}${u#*.}'

listening() { # engine container port
    for _ in $(seq 100); do
        eng "$1" exec "$2" sh -c "netstat -ltn | grep -q ':$3 '" 2>/dev/null && return 0
        sleep 0.05
    done
    die "$1: nothing listens on $2:$3"
}

c2c_throughput() { # engine -> MB/s
    local e=$1 ip t
    eng "$e" run -d --name srv "$IMG" sh -c 'nc -l -p 5001 >/dev/null' >/dev/null
    listening "$e" srv 5001
    ip=$(eng "$e" inspect -f '{{.NetworkSettings.IPAddress}}' srv)
    t=$(eng "$e" run --rm "$IMG" sh -c "s=\$($UPTIME); dd if=/dev/zero bs=65536 count=$COUNT 2>/dev/null | nc $ip 5001; e=\$($UPTIME); echo \$((e - s))")
    eng "$e" rm -f srv >/dev/null
    python3 -c "print(f'{$BYTES / ($t / 100) / 1e6:.0f}')"
}

host_throughput() { # engine -> MB/s through the published port on 127.0.0.1
    local e=$1 port
    eng "$e" run -d --name srv -p 127.0.0.1::5001 "$IMG" sh -c 'nc -l -p 5001 >/dev/null' >/dev/null
    listening "$e" srv 5001
    port=$(eng "$e" port srv 5001/tcp | head -n1 | sed 's/.*://')
    python3 - "$port" "$BYTES" <<'EOF'
import socket, sys, time
port, total = int(sys.argv[1]), int(sys.argv[2])
buf = bytes(1 << 20)
t = time.perf_counter()
s = socket.create_connection(("127.0.0.1", port))
sent = 0
while sent < total:
    sent += s.send(buf)
s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
print(f"{total / (time.perf_counter() - t) / 1e6:.0f}")
EOF
    eng "$e" rm -f srv >/dev/null
}

host_latency() { # engine -> median and p99 µs of one HTTP/1.0 GET through the published port
    local e=$1 port
    eng "$e" run -d --name web -p 127.0.0.1::80 "$IMG" httpd -f -p 80 -h /www >/dev/null
    listening "$e" web 80
    port=$(eng "$e" port web 80/tcp | head -n1 | sed 's/.*://')
    python3 - "$port" "$REQS" <<'EOF'
import socket, statistics, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
lat = []
for i in range(n + 20):
    t = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    body = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        body += b
    s.close()
    assert b"hello" in body, body
    if i >= 20:
        lat.append((time.perf_counter() - t) * 1e6)
lat.sort()
print(f"{statistics.median(lat):.0f} {lat[int(len(lat) * 0.99) - 1]:.0f}")
EOF
    eng "$e" rm -f web >/dev/null
}

c2c_latency() { # engine -> mean µs of one nc request to httpd in another container
    local e=$1 ip t n=200
    eng "$e" run -d --name web "$IMG" httpd -f -p 80 -h /www >/dev/null
    listening "$e" web 80
    ip=$(eng "$e" inspect -f '{{.NetworkSettings.IPAddress}}' web)
    t=$(eng "$e" run --rm "$IMG" sh -c "s=\$($UPTIME); i=0; while [ \$i -lt $n ]; do printf 'GET / HTTP/1.0\r\n\r\n' | nc $ip 80 >/dev/null; i=\$((i + 1)); done; e=\$($UPTIME); echo \$((e - s))")
    eng "$e" rm -f web >/dev/null
    echo $((t * 10000 / n))
}

start_cost() { # engine network -> median ms of `docker run --rm` (true)
    local e=$1 net=$2
    python3 - "$STARTS" "$RUN/$e/d.sock" "$net" "$IMG" "$RUN/cli" <<'EOF'
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
        rec c2c_lat_us "$e" "$(c2c_latency "$e")"
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
    "host_lat_us": "host->published port HTTP request, median µs",
    "host_lat_p99_us": "host->published port HTTP request, p99 µs",
    "c2c_lat_us": "container->container nc+HTTP request, mean µs",
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
EOF
