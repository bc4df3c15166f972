#!/usr/bin/env bash
# The cgroup v2 lane: runs the skiff-cgroups integration tests (crates/cgroups/tests/real.rs)
# inside a throwaway VM whose kernel has cgroup v2 only (v2vm.sh next to this file).
#
#   scripts/v2vm/run-cgroup-tests.sh [TEST-FILTER...]
#
# Builds the test binary on the host, boots the VM once and runs the binary there from a
# read-only 9p share of its directory. Exits with the tests' status; prints a line starting
# with "SKIP" and exits 0 when the lane cannot run on this machine (not root, not x86_64, or
# no qemu and no apt-get to install it). v2vm.sh installs qemu, busybox-static and the kernel
# itself when apt-get is available, as in CI.
set -euo pipefail

LANE="cgroup v2 VM lane"
source "$(dirname "$0")/lane-checks.sh"
bin=$(cargo test -p skiff-cgroups --test real --no-run --message-format=json 2>/dev/null |
	sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "cannot build the skiff-cgroups integration test binary" >&2; exit 1; }
dir=$(dirname "$bin")

echo "cgroup v2 VM lane: running $(basename "$bin") on a pure cgroup v2 kernel" >&2
exec bash "$here/v2vm.sh" run --no-share --mount "$dir:$dir:ro" --timeout "${V2VM_TIMEOUT:-600}" \
	--env RUST_BACKTRACE --env 'SKIFF_CG_*' -- \
	"$bin" --test-threads=2 "$@"
