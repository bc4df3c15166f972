#!/usr/bin/env bash
# The newcomer's first command (as root on Debian): install what Skiff needs, build it, and
# run a real container with skiff-runtime: a busybox bundle from Debian's busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh demo
cargo build --release
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
bundle=/var/lib/skiff/demo/busybox
rm -rf "$bundle" && mkdir -p "$bundle/rootfs/bin"
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
for a in $("$bundle/rootfs/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$bundle/rootfs/bin/$a"; done
mkdir -p "$bundle/rootfs/"{proc,sys,dev,tmp,etc}
echo "root:x:0:0:root:/root:/bin/sh" >"$bundle/rootfs/etc/passwd"
(cd "$bundle" && "$bin/skiff-runtime" spec)
# Not interactive here: no terminal, and a command that shows it is isolated.
sed -i 's/"terminal": true/"terminal": false/' "$bundle/config.json"
python3 - "$bundle/config.json" <<'PY' 2>/dev/null || sed -i 's|"sh"$|"sh", "-c", "echo Hello from a Skiff container: hostname $(hostname), pid $$, uid $(id -u); ls /"|' "$bundle/config.json"
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["sh", "-c", "echo Hello from a Skiff container: hostname $(hostname), pid $$, uid $(id -u); ls /"]
json.dump(c, open(p, "w"), indent=2)
PY
echo "+ skiff-runtime run --bundle $bundle demo"
"$bin/skiff-runtime" run --bundle "$bundle" "demo-$$"
echo
echo "Skiff is built in $bin. Try an interactive shell:"
echo "  cd $bundle && sed -i 's/\"terminal\": false/\"terminal\": true/' config.json && $bin/skiff-runtime run shell"
