#!/bin/bash
# `skiff-image pull` next to `docker pull`, from the same local registry, in one run: pull + unpack
# of a ~120 MiB Debian bookworm minbase image (one gzip layer, from debootstrap) and of a ~500 MiB
# synthetic image (5 gzip layers: random data, text, 10,000 small files, zeros, mixed + whiteouts).
# Prints median wall times, MB/s (compressed and unpacked bytes), peak memory and the ratio
# skiff/docker. Run as root on Debian 12; missing packages are installed with apt-get.
#
#   bench/pull.sh                               # both engines; builds skiff-image (cargo, release)
#   SKIFF_IMAGE=/path/to/skiff-image bench/pull.sh
#   bench/pull.sh --engines docker              # only one side (docker | skiff | docker,skiff)
#   bench/pull.sh --images big                  # only one image (debian | big | debian,big)
#   ROUNDS=5 bench/pull.sh                      # rounds per image and engine (default 3)
#
# Environment: ROUNDS (3), SETTLE (31 s after emptying the stores), SKIFF_IMAGE, BENCH_DIR (/var/tmp/skiff-bench: image cache, registry
# storage, run directory), DEBIAN_MIRROR (http://deb.debian.org/debian), CARGO_TARGET_DIR.
#
# Every round, for each image, runs skiff and docker one after the other (alternating which goes
# first), into image stores emptied at the start of the round (skiff: `rmi -f`, `prune -a`, `gc`;
# dockerd: `docker rmi` + `docker system prune -af`) and then left SETTLE (31) seconds. Nothing else is dropped (registry blobs stay in the
# page cache, warmed before the first round); `sync` runs before each timed pull. The registry
# (Debian's docker-registry, plain HTTP on a free 127.0.0.1 port) and a private dockerd (own
# data root, exec root, socket, pidfile; no bridge, no iptables) are started here and stopped on
# exit. Images are built reproducibly once and cached in $BENCH_DIR. See bench/README.md.
set -eu
set -o pipefail

ROUNDS=${ROUNDS:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp/skiff-bench}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ENGINES=docker,skiff
IMAGES=debian,big
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

usage() { sed -n '2,/^set -eu$/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "bench/pull.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --engines) [ $# -ge 2 ] || die "--engines needs a value"; ENGINES=$2; shift 2 ;;
        --engines=*) ENGINES=${1#*=}; shift ;;
        --images) [ $# -ge 2 ] || die "--images needs a value"; IMAGES=$2; shift 2 ;;
        --images=*) IMAGES=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
has() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }
for e in ${ENGINES//,/ }; do case "$e" in docker|skiff) ;; *) die "unknown engine '$e' (docker, skiff)" ;; esac; done
for i in ${IMAGES//,/ }; do case "$i" in debian|big) ;; *) die "unknown image '$i' (debian, big)" ;; esac; done
case "$ROUNDS" in ''|*[!0-9]*|0) die "ROUNDS must be a positive number" ;; esac
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, dockerd, unpacking files of other owners)"

# --- packages -----------------------------------------------------------------------------------
# policy-rc.d keeps the packages' init scripts from starting a system-wide dockerd or registry.
apt_install() {
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
want_pkg() { [ -x "$1" ] || command -v "$1" >/dev/null 2>&1 || missing="$missing $2"; }
want_pkg python3 python3
want_pkg curl curl
want_pkg skopeo skopeo
want_pkg docker-registry docker-registry
want_pkg /usr/sbin/debootstrap debootstrap
want_pkg /usr/bin/time time
if has "$ENGINES" docker; then
    want_pkg dockerd docker.io
    want_pkg containerd containerd
fi
if [ -n "$missing" ]; then
    say "installing:$missing"
    # shellcheck disable=SC2086
    apt_install $missing || die "apt-get install$missing failed"
fi

# --- skiff-image binary -------------------------------------------------------------------------
SKIFF=""
if has "$ENGINES" skiff; then
    if [ -z "${SKIFF_IMAGE:-}" ]; then
        command -v cargo >/dev/null 2>&1 || die "cargo is missing (https://rustup.rs), or set SKIFF_IMAGE"
        say "cargo build --release -p skiff-image"
        (cd "$repo" && cargo build --release --quiet -p skiff-image) || die "cargo build failed"
        SKIFF_IMAGE=${CARGO_TARGET_DIR:-$repo/target}/release/skiff-image
    fi
    [ -x "$SKIFF_IMAGE" ] || die "no skiff-image binary at $SKIFF_IMAGE"
    SKIFF=$SKIFF_IMAGE
fi

# --- images (OCI layouts, cached) ---------------------------------------------------------------
OCI=$BENCH_DIR/oci
CACHE=$BENCH_DIR/cache
mkdir -p "$OCI" "$CACHE"
PY=(python3 "$here/pullimages.py")

# build NAME KEY COMMAND...: (re)build $OCI/NAME unless its stamp matches KEY
build() {
    local name=$1 key=$2 t0
    shift 2
    if [ -f "$OCI/$name/.recipe" ] && [ "$(cat "$OCI/$name/.recipe")" = "$key" ]; then return 0; fi
    say "building image $name"
    rm -rf "${OCI:?}/${name:?}"
    t0=$(date +%s)
    "$@" >"$OCI/$name.build.json.tmp"
    mv "$OCI/$name.build.json.tmp" "$OCI/$name/.build.json"
    echo "$key" >"$OCI/$name/.recipe"
    say "built $name in $(($(date +%s) - t0)) s"
}

unmount_under() { # dir: lazily unmounts everything mounted below it, deepest first
    awk -v p="$1/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

if has "$IMAGES" debian; then
    DEB_TAR=$CACHE/debian-bookworm-minbase.tar
    if [ ! -s "$DEB_TAR" ]; then
        say "debootstrap --variant=minbase bookworm from $MIRROR (once; a minute or two)"
        DT=$(mktemp -d "$CACHE/debootstrap.XXXXXX")
        if ! nice debootstrap --variant=minbase --arch="$(dpkg --print-architecture)" bookworm \
            "$DT/rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
            unmount_under "$DT"
            tail -n 20 "$CACHE/debootstrap.log" >&2
            die "debootstrap failed; see $CACHE/debootstrap.log"
        fi
        unmount_under "$DT"
        R=$DT/rootfs
        rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb \
            "$R"/var/log/*.log "$R"/var/log/apt/* "$R"/debootstrap
        rm -rf "${R:?}"/dev/* "$R"/proc/* "$R"/sys/* "$R"/run/* "$R"/tmp/*
        rm -f "$R"/etc/resolv.conf "$R"/etc/hostname
        : >"$R/etc/machine-id"
        tar --numeric-owner --sort=name --xattrs --xattrs-include='security.capability' \
            -C "$R" -cf "$DEB_TAR.tmp" .
        mv "$DEB_TAR.tmp" "$DEB_TAR"
        rm -rf --one-file-system "$DT"
    fi
    build debian "$("${PY[@]}" recipe rootfs)-$(stat -c '%s-%Y' "$DEB_TAR")" \
        "${PY[@]}" rootfs "$OCI/debian" --tar "$DEB_TAR" --tag bookworm --cmd bash
fi
if has "$IMAGES" big; then
    build big "$("${PY[@]}" recipe big)" nice "${PY[@]}" big "$OCI/big"
fi

# --- run directory, cleanup -------------------------------------------------------------------
mkdir -p "$BENCH_DIR/runs"
RUN=$(mktemp -d "$BENCH_DIR/runs/run.XXXXXX")
REG_PID="" DOCKERD_PID="" SAMPLER_PID=""
stop_pid() { # pid: TERM, wait up to 30 s, then KILL
    local pid=$1 i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    echo "bench/pull.sh: pid $pid ignored SIGTERM for 30 s; killing it (iteration $i)" >&2
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    set +e
    stop_pid "$SAMPLER_PID"
    stop_pid "$DOCKERD_PID"
    stop_pid "$REG_PID"
    unmount_under "$RUN"
    rm -rf --one-file-system "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- registry -----------------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
STORAGE=$BENCH_DIR/registry/storage
mkdir -p "$STORAGE" "$RUN/registry"
cat >"$RUN/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STORAGE
  cache:
    blobdescriptor: inmemory
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $REG
  secret: skiff-bench-registry
EOF
# a clean environment: the registry reads REGISTRY_* variables as configuration overrides
setsid env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    docker-registry serve "$RUN/registry/config.yml" </dev/null >"$RUN/registry/log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do
    curl -fs -o /dev/null --max-time 2 "http://$REG/v2/" && break
    kill -0 "$REG_PID" 2>/dev/null || { tail -n 20 "$RUN/registry/log" >&2; die "the registry exited"; }
    sleep 0.1
done
curl -fs -o /dev/null --max-time 2 "http://$REG/v2/" || die "the registry does not answer on $REG"
say "registry on http://$REG (storage $STORAGE)"

# push NAME TAG: the layout's tag to $REG/bench/NAME:TAG (blobs already there are skipped)
declare -A REF CBYTES UBYTES NLAYERS
for name in ${IMAGES//,/ }; do
    tag=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$OCI/$name/index.json")
    skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$OCI/$name:$tag" "docker://$REG/bench/$name:$tag"
    REF[$name]=$REG/bench/$name:$tag
    read -r c n < <(python3 - "$OCI/$name" <<'EOF'
import json, os, sys
lay = sys.argv[1]
idx = json.load(open(os.path.join(lay, "index.json")))
d = idx["manifests"][0]["digest"].split(":", 1)[1]
m = json.load(open(os.path.join(lay, "blobs", "sha256", d)))
print(sum(l["size"] for l in m["layers"]), len(m["layers"]))
EOF
    )
    CBYTES[$name]=$c
    NLAYERS[$name]=$n
    UBYTES[$name]=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["uncompressed"])' "$OCI/$name/.build.json")
    say "pushed ${REF[$name]}: ${NLAYERS[$name]} gzip layer(s), $((c / 1000000)) MB compressed, $((UBYTES[$name] / 1000000)) MB of tar"
done
# registry blobs into the page cache, so the first timed pull does not read the disk
find "$STORAGE/docker/registry/v2/blobs" -type f -name data -exec cat {} + >/dev/null

# --- dockerd ------------------------------------------------------------------------------------
DOCKER=""
if has "$ENGINES" docker; then
    # the docker.io package's client, the same version as its daemon
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=$(command -v docker) || die "no docker client"; fi
    D=$RUN/docker
    mkdir -p "$D/cli"
    # without deprecated-key-path dockerd 20.10 writes /etc/docker/key.json
    printf '{"deprecated-key-path": "%s"}\n' "$D/key.json" >"$D/daemon.json"
    setsid dockerd --config-file "$D/daemon.json" --data-root "$D/data" --exec-root "$D/exec" \
        --pidfile "$D/docker.pid" -H "unix://$D/docker.sock" \
        --iptables=false --ip6tables=false --ip-masq=false --bridge=none --userland-proxy=false \
        --storage-driver=overlay2 </dev/null >"$D/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    dk() { env -u DOCKER_HOST -u DOCKER_CONTEXT DOCKER_CONFIG="$D/cli" "$DOCKER" -H "unix://$D/docker.sock" "$@"; }
    for _ in $(seq 300); do
        [ -S "$D/docker.sock" ] && dk version --format '{{.Server.Version}}' >/dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -n 30 "$D/dockerd.log" >&2; die "dockerd exited"; }
        sleep 0.2
    done
    DOCKERD_VERSION=$(dk version --format '{{.Server.Version}}' 2>/dev/null) || {
        tail -n 30 "$D/dockerd.log" >&2; die "dockerd did not come up"; }
    say "dockerd $DOCKERD_VERSION (pid $DOCKERD_PID, data root $D/data, storage driver $(dk info --format '{{.Driver}}'))"
fi

# --- timing helpers -----------------------------------------------------------------------------
now_ns() { date +%s%N; }
vm_kib() { # pid field: VmRSS / VmHWM of a process in KiB
    awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
}
# Samples, every 20 ms until SIGTERM, a process and all its descendants except containerd's
# subtree (dockerd's own containerd is idle during a pull; the helpers it starts, such as
# `docker-untar`, dockerd re-executed to unpack a layer, are counted). Writes to a file:
# "peak_sum_of_PSS peak_sum_of_RSS peak_RSS_of_the_process_alone helper_names" (KiB).
# PSS splits pages shared between processes (dockerd and its re-executed self share the binary's
# text), so the PSS sum does not count them twice as the RSS sum does.
start_sampler() { # pid outfile
    python3 - "$1" "$2" <<'EOF' &
import os, signal, sys, time
root, out = int(sys.argv[1]), sys.argv[2]
page = os.sysconf("SC_PAGE_SIZE") // 1024
peak_pss = peak_rss = peak_root = 0
helpers = set()
def done(*_):
    with open(out, "w") as f:
        f.write("%d %d %d %s\n" % (peak_pss, peak_rss, peak_root, ",".join(sorted(helpers)) or "-"))
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
def stat(pid):  # (comm, ppid, rss KiB)
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    comm = s[s.index("(") + 1:s.rindex(")")]
    fields = s[s.rindex(")") + 2:].split()
    return comm, int(fields[1]), int(fields[21]) * page
def pss(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
while True:
    try:
        r = stat(root)
    except OSError:
        done()
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                procs[int(d)] = stat(int(d))
            except OSError:
                pass
    kids = {}
    for pid, (comm, ppid, rss) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    rss_sum, pss_sum, todo = r[2], pss(root), list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        comm, _, rss = procs[pid]
        if comm.startswith("containerd"):
            continue
        if comm == "exe":  # dockerd re-executing itself (/proc/self/exe): name it by argv[0]
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    comm = os.path.basename(f.read().split(b"\0")[0].decode(errors="replace")) or comm
            except OSError:
                pass
        if comm != "exe":  # "exe": caught mid-exec, named on the next sample
            helpers.add(comm)
        rss_sum += rss
        pss_sum += pss(pid)
        todo.extend(kids.get(pid, []))
    peak_pss, peak_rss, peak_root = max(peak_pss, pss_sum), max(peak_rss, rss_sum), max(peak_root, r[2])
    time.sleep(0.02)
EOF
    SAMPLER_PID=$!
    sleep 0.2 # python's start-up, so it samples from before the pull on
}
stop_sampler() { stop_pid "$SAMPLER_PID"; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""; }

RES=$RUN/results.tsv # image engine round seconds peak_kib extra
: >"$RES"

run_docker() { # image round
    local img=$1 r=$2 t0 t1 base hwm0 hwm1 peak rss_sum peak_d helpers
    ! dk image inspect "${REF[$img]}" >/dev/null 2>&1 || die "docker still has ${REF[$img]} before the pull"
    sync
    base=$(awk '$1 == "Pss:" {print $2}' "/proc/$DOCKERD_PID/smaps_rollup")
    hwm0=$(vm_kib "$DOCKERD_PID" VmHWM)
    start_sampler "$DOCKERD_PID" "$RUN/sample"
    t0=$(now_ns)
    dk pull -q "${REF[$img]}" >/dev/null || die "docker pull ${REF[$img]} failed"
    t1=$(now_ns)
    stop_sampler
    hwm1=$(vm_kib "$DOCKERD_PID" VmHWM)
    read -r peak rss_sum peak_d helpers <"$RUN/sample"
    printf '%s\tdocker\t%s\t%s\t%s\tidle_pss=%s rss_sum=%s dockerd_rss=%s hwm=%s->%s helpers=%s\n' "$img" "$r" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')" "$peak" "$base" "$rss_sum" \
        "$peak_d" "$hwm0" "$hwm1" "$helpers" >>"$RES"
    if [ "$r" = 1 ]; then
        say "  docker: $img is $(du -sm "$D/data" | cut -f1) MiB in dockerd's data root"
    fi
}

SKIFF_ROOT=$RUN/skiff-root
# Like dockerd's, skiff's store lives for the whole run and is emptied before each image.
empty_stores() {
    local img
    if has "$ENGINES" docker; then
        for img in ${IMAGES//,/ }; do dk rmi -f "${REF[$img]}" >/dev/null 2>&1 || true; done
        dk system prune -af >/dev/null
    fi
    if has "$ENGINES" skiff; then
        mkdir -p "$SKIFF_ROOT"
        for img in ${IMAGES//,/ }; do
            "$SKIFF" --data-root "$SKIFF_ROOT" rmi -f "${REF[$img]}" >/dev/null 2>&1 || true
        done
        "$SKIFF" --data-root "$SKIFF_ROOT" prune -a >/dev/null 2>&1 || true
        "$SKIFF" --data-root "$SKIFF_ROOT" gc >/dev/null
    fi
    sync
    # On an ext4 without a journal (this CI machine's) the inode allocator skips inodes freed
    # less than ~30 s ago, looking each one up: a pull right after deleting thousands of files
    # spends most of its time there. Both engines get the same settled filesystem.
    sleep "${SETTLE:-31}"
}

run_skiff() { # image round
    local img=$1 r=$2 t0 t1 root=$SKIFF_ROOT
    ! "$SKIFF" --data-root "$root" inspect "${REF[$img]}" >/dev/null 2>&1 ||
        die "skiff still has ${REF[$img]} before the pull"
    sync
    t0=$(now_ns)
    if ! /usr/bin/time -f %M -o "$RUN/skiff-time" "$SKIFF" --data-root "$root" --insecure-registry "$REG" \
        pull "${REF[$img]}" >"$RUN/skiff-out" 2>&1; then
        tail -n 20 "$RUN/skiff-out" >&2
        die "skiff-image pull ${REF[$img]} failed"
    fi
    t1=$(now_ns)
    printf '%s\tskiff\t%s\t%s\t%s\t-\n' "$img" "$r" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')" "$(tail -n 1 "$RUN/skiff-time")" >>"$RES"
    if [ "$r" = 1 ]; then
        say "  skiff: $img is $(du -sm "$root" | cut -f1) MiB in its data root"
    fi
}

# --- rounds -------------------------------------------------------------------------------------
say "$ROUNDS round(s); engines: $ENGINES; images: $IMAGES"
for r in $(seq "$ROUNDS"); do
    empty_stores
    for img in ${IMAGES//,/ }; do
        if [ $((r % 2)) = 1 ]; then order="skiff docker"; else order="docker skiff"; fi
        for e in $order; do
            has "$ENGINES" "$e" || continue
            "run_$e" "$img" "$r"
            tail -n 1 "$RES" | awk -F'\t' '{printf "   round %s  %-6s %-6s %7.2f s  peak %6.1f MiB  %s\n", $3, $1, $2, $4, $5 / 1024, ($6 == "-" ? "" : "(KiB: " $6 ")")}' >&2
        done
    done
done

# --- summary ------------------------------------------------------------------------------------
echo
echo "Pull + unpack from $REG, $ROUNDS round(s), medians (MB = 10^6 bytes; min-max in brackets)"
if [ -n "$DOCKER" ]; then
    if command -v unpigz >/dev/null 2>&1; then gz="unpigz (pigz is installed)"; else gz="Go's compress/gzip (no unpigz in PATH)"; fi
    echo "dockerd $DOCKERD_VERSION, overlay2, gunzips with $gz"
fi
echo "skiff-image: ${SKIFF:-not run}"
args=()
for img in ${IMAGES//,/ }; do args+=("$img" "${CBYTES[$img]}" "${UBYTES[$img]}" "${NLAYERS[$img]}"); done
python3 - "$RES" "${args[@]}" <<'EOF'
import statistics, sys
res, rest = sys.argv[1], sys.argv[2:]
meta = {rest[i]: (int(rest[i + 1]), int(rest[i + 2]), int(rest[i + 3])) for i in range(0, len(rest), 4)}
rows = {}
helpers = set()
for line in open(res):
    img, eng, rnd, secs, peak, extra = line.rstrip("\n").split("\t")
    rows.setdefault((img, eng), []).append((float(secs), int(peak), extra))
print()
print("| image | engine | time (s) | compressed MB/s | unpacked MB/s | peak memory (MiB) | skiff/docker time |")
print("|---|---|---|---|---|---|---|")
for img, (cb, ub, nl) in meta.items():
    med = {}
    for eng in ("skiff", "docker"):
        runs = rows.get((img, eng))
        if not runs:
            continue
        t = [x[0] for x in runs]
        p = [x[1] / 1024 for x in runs]
        med[eng] = statistics.median(t)
        ratio = ""
        if eng == "docker" and "skiff" in med:
            ratio = "%.2f" % (med["skiff"] / med["docker"])
        peak = "%.0f (%.0f-%.0f)" % (statistics.median(p), min(p), max(p))
        if eng == "docker":
            kv = [dict(f.split("=", 1) for f in x[2].split()) for x in runs]
            base = [int(k["idle_pss"]) / 1024 for k in kv]
            rsum = [int(k["rss_sum"]) / 1024 for k in kv]
            alone = [int(k["dockerd_rss"]) / 1024 for k in kv]
            peak += " PSS, +%.0f over idle; RSS sum %.0f; dockerd alone %.0f RSS" % (
                statistics.median([a - b for a, b in zip(p, base)]), statistics.median(rsum),
                statistics.median(alone))
            helpers.update(h for k in kv for h in k["helpers"].split(",") if h != "-")
        print("| %s (%d MB gz, %d MB tar, %d layer%s) | %s | %.2f (%.2f-%.2f) | %.0f | %.0f | %s | %s |" % (
            img, cb / 1e6, ub / 1e6, nl, "s" if nl > 1 else "", eng, med[eng], min(t), max(t),
            cb / 1e6 / med[eng], ub / 1e6 / med[eng], peak, ratio))
print()
print("peak memory: skiff = max RSS of the skiff-image process (/usr/bin/time %M). docker = the")
print("highest sum of the PSS of dockerd and its child processes (containerd left out; helpers")
print("seen: %s), sampled every 20 ms during the pull, and its rise over dockerd's idle" %
      (", ".join(sorted(helpers)) or "none"))
print("PSS just before; also the highest RSS sum (counts the binary shared by dockerd and its")
print("re-executed helpers twice) and dockerd's own peak RSS. The docker CLI is not counted.")
print("unpacked MB/s counts the bytes of the uncompressed layer tars. Target: skiff/docker")
print("time <= 0.33.")
EOF
cp "$RES" "$BENCH_DIR/pull-last.tsv"
