# Sourced by the v2 VM lanes with LANE set: prints "SKIP <lane>: why" and exits 0 when the
# lane cannot run on this machine; otherwise sets `here` and `repo` and changes into the repo.
here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
skip() { echo "SKIP $LANE: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (qemu 9p passthrough, mknod, apt-get)"
[ "$(uname -m)" = x86_64 ] || skip "needs an x86_64 host"
if ! command -v qemu-system-x86_64 >/dev/null 2>&1 && ! command -v apt-get >/dev/null 2>&1; then
	skip "qemu-system-x86_64 is missing and there is no apt-get to install it"
fi
cd "$repo"
