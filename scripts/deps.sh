#!/usr/bin/env bash
# Installs the Debian packages Skiff's build, demo and tests need (only what is missing).
# Usage: scripts/deps.sh [demo|test]
set -euo pipefail
want=(busybox-static ca-certificates gcc libc6-dev pkg-config procps iproute2 util-linux)
# skiffd's networks write their rules with nft; the demo also drives skiffd with the docker CLI
# (policy-rc.d below keeps the package's own dockerd from starting).
want+=(nftables docker.io)
if [ "${1:-demo}" = test ]; then
	# Engines the runtime is tested under, and what the cgroup v2 VM lane boots with.
	want+=(containerd docker.io runc qemu-system-x86 cpio xz-utils e2fsprogs)
	# A real registry for skiff-registry's integration tests (basic and token auth).
	want+=(docker-registry apache2-utils openssl python3)
	want+=(python3-docker) # docker-py smoke test of skiffd (skipped when python3 lacks it)
	# newuidmap/newgidmap for rootless multi-range id maps.
	want+=(uidmap)
fi
missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# policy-rc.d: do not start docker/containerd services at install time; the tests start
	# their own daemons with private state.
	ours=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && ours=1
	fi
	rc=0
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
	[ -z "$ours" ] || rm -f /usr/sbin/policy-rc.d
	[ "$rc" = 0 ] || { echo "apt-get install ${missing[*]} failed" >&2; exit "$rc"; }
fi
if ! command -v cargo >/dev/null 2>&1; then
	[ -x "$HOME/.cargo/bin/cargo" ] || {
		echo "installing the Rust toolchain with rustup" >&2
		apt-get install -y -qq curl >/dev/null
		curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy -c rustfmt
	}
	export PATH="$HOME/.cargo/bin:$PATH"
fi
