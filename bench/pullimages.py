#!/usr/bin/env python3
"""Builds the images of bench/pull.sh as OCI image layouts (stdlib only).

  pullimages.py rootfs LAYOUT --tar ROOTFS.tar --tag T   one gzip layer from a rootfs tarball
  pullimages.py big    LAYOUT                            ~500 MiB, 5 gzip layers, synthetic
  pullimages.py recipe NAME                              version key of a builder (cache stamp)

Trimmed from the project's test fixtures builder (ocifix.py). All timestamps are
fixed (SOURCE_DATE_EPOCH, default 1700000000) and gzip headers carry no name or
mtime, so `big` is byte-for-byte reproducible on any machine; `rootfs` is as
reproducible as its input tarball. Each prints {"TAG": manifest digest,
"uncompressed": bytes} on stdout.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import sys
import tarfile
import tempfile
import time

EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))
CREATED = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH))
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
GZIP_LEVEL = 6
# Bump an image's number whenever its builder's output changes: pull.sh
# rebuilds a layout only when this (or its input) changed.
RECIPE = {"rootfs": 1, "big": 2}


def log(*a):
    print("[pullimages]", *a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# OCI image layout
# --------------------------------------------------------------------------
class Layout:
    def __init__(self, path):
        self.path = path
        self.blobs = os.path.join(path, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        ip = os.path.join(path, "index.json")
        if os.path.exists(ip):
            with open(ip) as f:
                self.index = json.load(f)
        else:
            self.index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}

    def put_bytes(self, data, media_type, **extra):
        d = hashlib.sha256(data).hexdigest()
        p = os.path.join(self.blobs, d)
        if not os.path.exists(p):
            with open(p + ".tmp", "wb") as f:
                f.write(data)
            os.replace(p + ".tmp", p)
        desc = {"mediaType": media_type, "digest": "sha256:" + d, "size": len(data)}
        desc.update(extra)
        return desc

    def put_file(self, src, digest_hex, size, media_type):
        p = os.path.join(self.blobs, digest_hex)
        if os.path.exists(p):
            os.unlink(src)
        else:
            os.replace(src, p)
        return {"mediaType": media_type, "digest": "sha256:" + digest_hex, "size": size}

    def put_json(self, obj, media_type, **extra):
        return self.put_bytes(json.dumps(obj, indent=2).encode() + b"\n", media_type, **extra)

    def tag(self, tag, desc):
        d = dict(desc)
        ann = dict(d.get("annotations", {}))
        ann["org.opencontainers.image.ref.name"] = tag
        d["annotations"] = ann
        ms = [m for m in self.index["manifests"]
              if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
        ms.append(d)
        self.index["manifests"] = ms
        tmp = os.path.join(self.path, "index.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.index, f, indent=2)
            f.write("\n")
        os.replace(tmp, os.path.join(self.path, "index.json"))


class _Tee:
    """File-like sink: hashes what is written and forwards it."""

    def __init__(self, sink):
        self.sink, self.h, self.n = sink, hashlib.sha256(), 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        if self.sink is not None:
            self.sink.write(b)
        return len(b)

    def flush(self):
        pass


def build_layer(layout, writer):
    """writer: callable(tarfile) adding members. Writes the uncompressed tar to a
    temporary file (hashing it: the diff_id), gzips it into a blob.
    Returns (diff_id_hex, gzip descriptor, uncompressed_size)."""
    fd, raw = tempfile.mkstemp(prefix="layer-", suffix=".tar", dir=layout.path)
    gz_path = raw + ".gz"
    try:
        with os.fdopen(fd, "wb") as f:
            tee = _Tee(f)
            with tarfile.open(fileobj=tee, mode="w|", format=tarfile.PAX_FORMAT,
                              encoding="utf-8") as tf:
                writer(tf)
        diff_id, usize = tee.h.hexdigest(), tee.n
        with open(raw, "rb") as src, open(gz_path, "wb") as dst:
            with gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL,
                               fileobj=dst, mtime=0) as gz:
                shutil.copyfileobj(src, gz, 1 << 20)
        h = hashlib.sha256()
        with open(gz_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        desc = layout.put_file(gz_path, h.hexdigest(), os.path.getsize(gz_path), MT_LAYER_GZIP)
        return diff_id, desc, usize
    finally:
        for p in (raw, gz_path):
            if os.path.exists(p):
                os.unlink(p)


def image_config(diff_ids, history, arch="amd64", variant=None, **cfg):
    c = {"Env": [PATH_ENV], "Cmd": ["sh"]}
    c.update(cfg)
    conf = {
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": c,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + d for d in diff_ids]},
        "history": history,
    }
    if variant:
        conf["variant"] = variant
    return conf


def hist(created_by, empty=False):
    h = {"created": CREATED, "created_by": created_by}
    if empty:
        h["empty_layer"] = True
    return h


def put_image(layout, config, layer_descs, annotations=None):
    cdesc = layout.put_json(config, MT_CONFIG)
    m = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cdesc, "layers": layer_descs}
    if annotations:
        m["annotations"] = annotations
    return layout.put_json(m, MT_MANIFEST)


def _clean(name):
    """Tar member name -> path relative to the root ('./a/b/' -> 'a/b')."""
    while name.startswith("./"):
        name = name[2:]
    name = name.strip("/")
    return "" if name == "." else name


# --------------------------------------------------------------------------
# rootfs tarball -> one-layer image
# --------------------------------------------------------------------------
def cmd_rootfs(a):
    lay = Layout(a.layout)

    def writer(tf):
        with tarfile.open(a.tar, "r:*") as src:
            for m in src:
                name = _clean(m.name)
                if not name:
                    continue
                m.name = name
                m.uname = m.gname = ""
                m.pax_headers = {k: v for k, v in m.pax_headers.items()
                                 if k.startswith("SCHILY.xattr.")}
                if m.islnk():
                    m.linkname = _clean(m.linkname)
                tf.addfile(m, src.extractfile(m) if m.isreg() else None)

    did, d, usize = build_layer(lay, writer)
    h = [hist("ADD %s /" % os.path.basename(a.tar)), hist('CMD ["%s"]' % a.run_cmd, empty=True)]
    cfg = image_config([did], h, Cmd=[a.run_cmd])
    md = put_image(lay, cfg, [d])
    lay.tag(a.tag, md)
    print(json.dumps({a.tag: md["digest"], "uncompressed": usize}))


# --------------------------------------------------------------------------
# big synthetic image
# --------------------------------------------------------------------------
MiB = 1 << 20


def rand_bytes(seed, n):
    return hashlib.shake_256(("fixture-%s" % seed).encode()).digest(n)


_CORPUS = None


def corpus():
    global _CORPUS
    if _CORPUS is None:
        r = random.Random(42)
        letters = "etaoinshrdlcumwfgypbvkjxqz"
        vocab = ["".join(r.choice(letters[:20] if i % 3 else letters) for _ in range(r.randint(2, 11)))
                 for i in range(6000)]
        words = r.choices(vocab, k=1_400_000)
        lines, line = [], []
        for i, w in enumerate(words):
            line.append(w)
            if len(line) >= 12 or (i % 17 == 0 and line):
                lines.append(" ".join(line))
                line = []
        _CORPUS = ("\n".join(lines) + "\n").encode()
    return _CORPUS


def text_bytes(seed, n):
    c = corpus()
    off = int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:4], "big") % len(c)
    head = ("# file %s\n" % seed).encode()
    out = bytearray(head)
    while len(out) < n:
        take = min(n - len(out), len(c) - off)
        out += c[off:off + take]
        off = 0
    return bytes(out[:n])


def _add(tf, path, data, mode=0o644):
    ti = tarfile.TarInfo(path)
    ti.mtime, ti.mode, ti.size = EPOCH, mode, len(data)
    ti.uname = ti.gname = ""
    tf.addfile(ti, io.BytesIO(data))


def _adddir(tf, path, mode=0o755):
    ti = tarfile.TarInfo(path)
    ti.type, ti.mtime, ti.mode = tarfile.DIRTYPE, EPOCH, mode
    ti.uname = ti.gname = ""
    tf.addfile(ti)


def _addwh(tf, path):
    d, b = os.path.split(path)
    _add(tf, os.path.join(d, ".wh." + b), b"")


def big_layers():
    def l1(tf):  # 100 MiB incompressible
        _adddir(tf, "big")
        _adddir(tf, "big/random")
        _add(tf, "big/random/blob-64m.bin", rand_bytes("l1-64m", 64 * MiB))
        for i in range(36):
            _add(tf, "big/random/r%02d.bin" % i, rand_bytes("l1-%d" % i, MiB))

    def l2(tf):  # 100 MiB text (~3-4x gzip)
        _adddir(tf, "big")
        _adddir(tf, "big/text")
        for i in range(50):
            _add(tf, "big/text/t%02d.txt" % i, text_bytes("l2-%d" % i, 2 * MiB))

    def l3(tf):  # 10000 small files, ~100 MiB, 100 dirs
        _adddir(tf, "big")
        _adddir(tf, "big/small")
        r = random.Random(3)
        for d in range(100):
            _adddir(tf, "big/small/d%02d" % d)
            for i in range(100):
                n = r.randint(1024, 19 * 1024)
                seed = "l3-%d-%d" % (d, i)
                data = rand_bytes(seed, n) if i % 2 else text_bytes(seed, n)
                _add(tf, "big/small/d%02d/f%03d" % (d, i), data, 0o755 if i % 10 == 0 else 0o644)

    def l4(tf):  # 100 MiB of zeros (compresses ~1000x)
        _adddir(tf, "big")
        _adddir(tf, "big/zeros")
        z = bytes(50 * MiB)
        _add(tf, "big/zeros/z1.bin", z)
        _add(tf, "big/zeros/z2.bin", z)

    def l5(tf):  # 100 MiB mixed + whiteouts into layer 3
        _adddir(tf, "big")
        _adddir(tf, "big/mixed")
        for i in range(25):
            seed = "l5-%d" % i
            data = rand_bytes(seed, 4 * MiB) if i % 2 else text_bytes(seed, 4 * MiB)
            _add(tf, "big/mixed/m%02d.bin" % i, data)
        _adddir(tf, "big/small")
        for d in range(0, 100, 10):
            _adddir(tf, "big/small/d%02d" % d)
            for i in range(0, 100, 10):
                _addwh(tf, "big/small/d%02d/f%03d" % (d, i))
        _adddir(tf, "big/small/d99")
        _add(tf, "big/small/d99/.wh..wh..opq", b"")
        _add(tf, "big/small/d99/replaced.txt", b"opaque dir replaced in layer 5\n")

    return [("random 100MiB", l1), ("text 100MiB", l2), ("10000 small files", l3),
            ("zeros 100MiB", l4), ("mixed 100MiB + whiteouts", l5)]


def cmd_big(a):
    lay = Layout(a.layout)
    dids, descs, h, total = [], [], [], 0
    for name, w in big_layers():
        t0 = time.time()
        did, d, usize = build_layer(lay, w)
        log("big layer %-26s %6.1f MiB -> %6.1f MiB gzip (%.1fs)" %
            (name, usize / MiB, d["size"] / MiB, time.time() - t0))
        dids.append(did)
        descs.append(d)
        h.append(hist("ADD %s" % name))
        total += usize
    # data only: no shell, no Cmd (`docker create big:latest x` to export it)
    cfg = image_config(dids, h, Labels={"org.opencontainers.image.title": "big"})
    del cfg["config"]["Cmd"]
    md = put_image(lay, cfg, descs)
    lay.tag("latest", md)
    print(json.dumps({"latest": md["digest"], "uncompressed": total}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)
    p = sp.add_parser("rootfs")
    p.add_argument("layout")
    p.add_argument("--tar", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--cmd", dest="run_cmd", default="bash", help="the image's Cmd")
    p = sp.add_parser("big")
    p.add_argument("layout")
    p = sp.add_parser("recipe")
    p.add_argument("name", choices=sorted(RECIPE))
    a = ap.parse_args()
    if a.cmd == "rootfs":
        cmd_rootfs(a)
    elif a.cmd == "big":
        cmd_big(a)
    elif a.cmd == "recipe":
        print("%s-v%d-gz%d-epoch%d" % (a.name, RECIPE[a.name], GZIP_LEVEL, EPOCH))


if __name__ == "__main__":
    main()
