#!/usr/bin/env bash
# The runtime's cgroup v2 lane: runs skiff-runtime's integration tests (real containers,
# crates/runtime/tests/runtime.rs and cgroups.rs) inside a VM whose kernel has cgroup v2 only.
#
#   scripts/v2vm/run-runtime-tests.sh [TEST-FILTER...]
#
# Prints a line starting with "SKIP" and exits 0 when the lane cannot run here (see
# run-cgroup-tests.sh for the same rules).
set -euo pipefail

LANE="runtime cgroup v2 VM lane"
source "$(dirname "$0")/lane-checks.sh"
cargo build -q -p skiff-runtime
# The container-level test binaries: runtime.rs (lifecycle, isolation...) and cgroups.rs (limits).
bins=$(cargo test -p skiff-runtime --test runtime --test cgroups --no-run --message-format=json 2>/dev/null |
	grep '"kind":\["test"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
[ "$(echo "$bins" | wc -w)" = 2 ] || { echo "cannot build the skiff-runtime integration test binaries" >&2; exit 1; }
bin=$(echo "$bins" | head -1)
# The VM has no compiler: build the in-container probe here.
probe_dir=$(mktemp -d /tmp/skiff-probe.XXXXXX)
trap 'rm -rf "$probe_dir"' EXIT
rustc -O -C target-feature=+crt-static --edition 2021 -o "$probe_dir/probe" crates/runtime/tests/probe/probe.rs
target=$(dirname "$(dirname "$bin")")   # target/debug

echo "runtime cgroup v2 VM lane: running $(echo $bins | xargs -n1 basename | tr '\n' ' ')on a pure cgroup v2 kernel" >&2
script="set -e; for t in $(echo $bins); do \$t --test-threads=2 $*; done"
bash "$here/v2vm.sh" run --no-share --mem 2G --mount "$target:$target:ro" --mount "$probe_dir:$probe_dir:ro" \
	--timeout "${V2VM_TIMEOUT:-900}" --env RUST_BACKTRACE --env "SKIFF_PROBE=$probe_dir/probe" --env SKIFF_TEST_CYCLES=20 -- \
	sh -c "$script"
