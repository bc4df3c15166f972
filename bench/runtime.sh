#!/bin/sh
# skiff-runtime vs runc vs crun on a busybox /bin/true bundle, in one hyperfine run, plus the
# kernel floor (unshare of the same namespaces). Prints medians and ratios. Run as root.
#
#   bench/runtime.sh                      # builds the release binary first
#   SKIFF_RUNTIME=/path/skiff-runtime bench/runtime.sh
#   RUNS=100 bench/runtime.sh             # more runs per command (default 50)
#
# crun from Debian (1.8) refuses this machine's hybrid cgroup layout, so it runs in a private
# mount namespace with /sys/fs/cgroup/unified unmounted; the cost of that wrapper around `true`
# is measured too and subtracted from crun's times. See bench/README.md.
set -eu

RUNS=${RUNS:-50}
WARMUP=${WARMUP:-5}
repo=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "bench/runtime.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing: apt-get install -y $2"; }

[ "$(id -u)" = 0 ] || die "run as root (containers, cgroups)"
need hyperfine hyperfine
need python3 python3
need runc runc
need crun crun
need unshare util-linux
need busybox busybox-static

if [ -z "${SKIFF_RUNTIME:-}" ]; then
    need cargo "rustup (https://rustup.rs)"
    (cd "$repo" && cargo build --release --quiet -p skiff-runtime)
    SKIFF_RUNTIME=${CARGO_TARGET_DIR:-$repo/target}/release/skiff-runtime
fi
[ -x "$SKIFF_RUNTIME" ] || die "no skiff-runtime binary at $SKIFF_RUNTIME"
SKIFF=$SKIFF_RUNTIME

T=$(mktemp -d /tmp/skiff-bench.XXXXXX)
cleanup() {
    for r in skiff runc; do
        for id in b-run b-csd probe; do
            [ $r = skiff ] && bin=$SKIFF || bin=runc
            "$bin" --root "$T/$r-root" delete --force "$r-$id" >/dev/null 2>&1 || true
        done
    done
    crun_wrap "crun --root $T/crun-root delete --force crun-probe; crun --root $T/crun-root delete --force crun-b-csd" \
        >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# A private mount namespace without the cgroup2 mount: crun then sees plain cgroup v1.
crun_wrap() { unshare -m sh -c "umount /sys/fs/cgroup/unified && $1"; }

# The bundle: busybox-static's binary and a `true` applet, runc's default spec running it.
B=$T/bundle
mkdir -p "$B/rootfs/bin"
cp "$(command -v busybox)" "$B/rootfs/bin/busybox"
ln -s busybox "$B/rootfs/bin/true"
ln -s busybox "$B/rootfs/bin/sleep"
(cd "$B" && runc spec)
sed -i -e 's/"terminal": true/"terminal": false/' -e 's|"sh"|"/bin/true"|' "$B/config.json"
grep -q '"/bin/true"' "$B/config.json" || die "could not rewrite runc's default spec"

# Each runtime once by hand first: a failure here is clearer than in hyperfine.
for cmd in "$SKIFF --root $T/skiff-root run -b $B skiff-check" \
    "runc --root $T/runc-root run -b $B runc-check"; do
    $cmd </dev/null || die "\`$cmd\` failed"
done
crun_wrap "exec crun --root $T/crun-root run -b $B crun-check" </dev/null || die "crun run failed"

# --- Is anything of ours left running after `create` returns, besides the container's init?
# Every process that appears during `create` and is still alive afterwards is listed; only the
# container's init (the pid in --pid-file) should be.
pids() { ls /proc | grep -E '^[0-9]+$' | sort -n; }
resident_check() { # name, create command (must write $T/pid)
    before=$(pids)
    rm -f "$T/pid"
    sh -c "$2" </dev/null >/dev/null 2>&1 || { echo "  $1: create failed"; return; }
    after=$(pids)
    init=$(cat "$T/pid")
    extra=""
    for p in $(printf '%s\n%s\n' "$before" "$after" | sort -n | uniq -u); do
        [ -d "/proc/$p" ] || continue
        echo "$before" | grep -qx "$p" && continue
        [ "$p" = "$init" ] && continue
        # Only processes related to the container or the runtime count.
        cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null || true)
        exe=$(readlink "/proc/$p/exe" 2>/dev/null || true)
        ppid=$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        case "$cmd $exe" in
        *skiff*|*runc*|*crun*|*"$T"*) extra="$extra $p($cmd)" ;;
        *) [ "$ppid" = "$init" ] && extra="$extra $p($cmd)" ;;
        esac
    done
    init_cmd=$(tr '\0' ' ' <"/proc/$init/cmdline" 2>/dev/null || echo '?')
    if [ -z "$extra" ]; then
        echo "  $1: only the container's init stays after create (pid $init: $init_cmd)"
    else
        echo "  $1: RESIDENT besides init $init ($init_cmd):$extra"
    fi
}
echo "Processes left after create:"
resident_check skiff-runtime "$SKIFF --root $T/skiff-root create -b $B --pid-file $T/pid skiff-probe"
$SKIFF --root "$T/skiff-root" delete --force skiff-probe
resident_check runc "runc --root $T/runc-root create -b $B --pid-file $T/pid runc-probe"
runc --root "$T/runc-root" delete --force runc-probe
# crun's init lives in the wrapper's mount namespace; the pid file path is the same file.
resident_check crun "unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun --root $T/crun-root create -b $B --pid-file $T/pid crun-probe'"
crun_wrap "exec crun --root $T/crun-root delete --force crun-probe"
echo

# --- The benchmark: one hyperfine run, every command interleaved by hyperfine in order.
# A failing run is counted (in $T/fail.NAME) instead of stopping hyperfine, and its container is
# force-deleted so that later runs start clean; the counts are printed with the table.
csd() { # name, runtime invocation prefix, container id
    echo "{ $2 create -b $B $3 && $2 start $3 && $2 delete --force $3; } || { echo >>$T/fail.$1; $2 delete --force $3 >/dev/null 2>&1; }"
}
counted() { # name, command
    echo "$2 || echo >>$T/fail.$1"
}
# The machine's speed drifts over minutes (other tenants, kernel work), so the runs are split
# into ROUNDS hyperfine runs of every command in turn, and the medians are taken over all runs:
# each command sees the same mix of fast and slow moments.
ROUNDS=${ROUNDS:-5}
per=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
for round in $(seq 1 "$ROUNDS"); do
hyperfine --style basic --warmup "$WARMUP" --runs "$per" --export-json "$T/round$round.json" \
    -n floor "unshare --fork --pid --mount --uts --ipc --net true" \
    -n skiff-run "$(counted skiff-run "$SKIFF --root $T/skiff-root run -b $B skiff-b-run")" \
    -n runc-run "$(counted runc-run "runc --root $T/runc-root run -b $B runc-b-run")" \
    -n crun-run-wrapped "$(counted crun-run "unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun --root $T/crun-root run -b $B crun-b-run'")" \
    -n wrapper "unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec true'" \
    -n skiff-csd "$(csd skiff-csd "$SKIFF --root $T/skiff-root" skiff-b-csd)" \
    -n runc-csd "$(csd runc-csd "runc --root $T/runc-root" runc-b-csd)" \
    -n crun-csd-wrapped "unshare -m sh -c 'umount /sys/fs/cgroup/unified && $(csd crun-csd "crun --root $T/crun-root" crun-b-csd)'" \
    -n shell-wrapper "unshare -m sh -c 'umount /sys/fs/cgroup/unified && true'" \
    </dev/null >>"$T/hyperfine.log" 2>&1 || { cat "$T/hyperfine.log"; die "hyperfine failed"; }
done
grep -i "warning" "$T/hyperfine.log" | sort -u | sed "s/^/hyperfine: /" || true

fails() { [ -f "$T/fail.$1" ] && wc -l <"$T/fail.$1" || echo 0; }
total=$(( (per + WARMUP) * ROUNDS ))
echo "Failed runs (of $total, warm-up included): skiff run $(fails skiff-run), runc run $(fails runc-run)," \
    "crun run $(fails crun-run); create+start+delete: skiff $(fails skiff-csd)," \
    "runc $(fails runc-csd), crun $(fails crun-csd)"
echo

# --- Medians (ms) over all rounds, and ratios.
python3 - "$T" "$ROUNDS" <<'PY'
import json, statistics, sys
T, rounds = sys.argv[1], int(sys.argv[2])
times = {}
for r in range(1, rounds + 1):
    for res in json.load(open(f"{T}/round{r}.json"))["results"]:
        times.setdefault(res["command"], []).extend(res["times"])
m = {k: statistics.median(v) * 1000 for k, v in times.items()}
n = len(times["skiff-run"])
crun_run = m["crun-run-wrapped"] - m["wrapper"]
crun_csd = m["crun-csd-wrapped"] - m["shell-wrapper"]
r = lambda a, b: f"{a / b:.2f}" if b > 0 else "-"
print(f"Median wall time, ms ({n} runs each in {rounds} interleaved rounds; crun net of its unshare/umount wrapper)\n")
print(f"{'':22} {'skiff':>9} {'runc':>9} {'crun':>9} {'floor':>9} {'skiff/crun':>11} {'skiff/runc':>11}")
print(f"{'run /bin/true':22} {m['skiff-run']:9.2f} {m['runc-run']:9.2f} {crun_run:9.2f} {m['floor']:9.2f} {r(m['skiff-run'], crun_run):>11} {r(m['skiff-run'], m['runc-run']):>11}")
print(f"{'create+start+delete':22} {m['skiff-csd']:9.2f} {m['runc-csd']:9.2f} {crun_csd:9.2f} {'':9} {r(m['skiff-csd'], crun_csd):>11} {r(m['skiff-csd'], m['runc-csd']):>11}")
print(f"\nwrapper around true: {m['wrapper']:.2f} ms (run), {m['shell-wrapper']:.2f} ms (shell sequence); kernel floor = unshare --fork --pid --mount --uts --ipc --net true")
print(f"target: skiff run <= 0.7 x crun -> {'met' if m['skiff-run'] <= 0.7 * crun_run else 'NOT met'}")
PY
