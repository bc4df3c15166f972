#!/usr/bin/env bash
# The newcomer's first command (as root on Debian): install what Skiff needs, build it, start
# skiffd (the Docker-API daemon) on /run/skiff/skiff.sock with its data in /var/lib/skiff, give
# it a busybox image made from Debian's busybox-static, and run a real container with `skiff`
# (Docker's CLI, our own build) and with the real `docker` CLI against skiffd.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh demo
cargo build --release
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
sock=/run/skiff/skiff.sock
export DOCKER_HOST=unix://$sock

# skiffd: reuse one that answers, else start it in the background (its log in /var/log).
if ! "$bin/skiff" version >/dev/null 2>&1; then
    echo "+ skiffd (log: /var/log/skiffd.log)"
    setsid "$bin/skiffd" </dev/null >>/var/log/skiffd.log 2>&1 &
    for _ in $(seq 100); do "$bin/skiff" version >/dev/null 2>&1 && break; sleep 0.1; done
    "$bin/skiff" version >/dev/null || { tail -n 20 /var/log/skiffd.log; exit 1; }
fi

# A busybox image (no registry needed): busybox-static with every applet, imported.
if ! "$bin/skiff" image inspect busybox:latest >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev,root}
    cp "$(command -v busybox)" "$rootfs/bin/busybox"
    for a in $("$rootfs/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"; done
    echo "root:x:0:0:root:/root:/bin/sh" >"$rootfs/etc/passwd"
    echo "+ skiff import (busybox-static) busybox:latest"
    tar --numeric-owner -C "$rootfs" -c . |
        "$bin/skiff" import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - busybox:latest
fi

echo "+ skiff run --rm busybox ..."
"$bin/skiff" run --rm busybox sh -c 'echo "Hello from a Skiff container: hostname $(hostname), pid $$, uid $(id -u)"; ip -o -4 addr show | grep -v " lo " || true'
echo "+ docker run --rm busybox uname -a   (the real docker CLI, talking to skiffd)"
docker run --rm busybox uname -a
echo
echo "skiffd is running (socket $sock, data /var/lib/skiff). Try:"
echo "  export DOCKER_HOST=unix://$sock PATH=$bin:\$PATH"
echo "  skiff run -it --rm busybox sh         # or the same with docker"
echo "  skiff run -d --name web -p 8080:80 busybox httpd -f -p 80 && skiff ps"
