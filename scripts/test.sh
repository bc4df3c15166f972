#!/usr/bin/env bash
# The whole test suite (as root on Debian): installs its own dependencies, checks formatting
# and lints, runs every unit and integration test (real containers, containerd, dockerd), and
# the cgroup v2 lane in a VM booted with a pure cgroup v2 kernel. Ends with one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh test
export RUST_BACKTRACE=1
# deps.sh installed the registry and its tools: the registry tests must not skip.
export SKIFF_REQUIRE_REGISTRY=1
# and docker.io (the CLI; its daemon is never started): the docker CLI tests must not skip.
export SKIFF_REQUIRE_DOCKER=1
log=$(mktemp /tmp/skiff-test.XXXXXX)
trap 'rm -f "$log"' EXIT
run() { "$@" 2>&1 | tee -a "$log"; }

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cgroup v2 lane (pure v2 kernel in a VM)"
bash scripts/v2vm/v2vm.sh prepare >/dev/null
run bash scripts/v2vm/run-cgroup-tests.sh
run bash scripts/v2vm/run-runtime-tests.sh
echo "== unit and integration tests (this host: hybrid cgroups)"
run cargo test --workspace --all-targets -- --test-threads=2
run cargo test --workspace --doc

passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '^test result: .* ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s += $1} END {print s + 0}')
echo "skiff: $passed passed, $failed failed"
