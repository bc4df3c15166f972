#!/usr/bin/env bash
# The whole test suite (as root on Debian): installs its own dependencies, checks formatting
# and lints, runs every unit and integration test (real containers, containerd, dockerd), and
# the cgroup v2 lane in a VM booted with a pure cgroup v2 kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh test
export RUST_BACKTRACE=1
echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cgroup v2 VM warm-up"
bash scripts/v2vm/v2vm.sh prepare >/dev/null
echo "== cgroup v2 lane (pure v2 kernel in a VM)"
bash scripts/v2vm/run-cgroup-tests.sh
bash scripts/v2vm/run-runtime-tests.sh
echo "== unit and integration tests (this host: hybrid cgroups)"
cargo test --workspace -- --test-threads=2
