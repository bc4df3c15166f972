//! End-to-end tests: layers built in memory, unpacked into tempdirs. They need root (chown,
//! mknod, `trusted.*` xattrs), as in CI; without root they print a message and return.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};
use skiff_unpack::{unpack, Compression, Error, Options};
use tar::{EntryType, Header};

const MTIME: u64 = 1_700_000_000;

fn is_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    eprintln!("skipping: this test needs root (chown, mknod, trusted.* xattrs)");
    false
}

/// A tar layer under construction, with raw control over names (hostile entries).
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn header(kind: EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(MTIME);
        h.set_size(size);
        h
    }

    /// Appends with the name (and link name) written verbatim, bypassing the builder's checks.
    fn raw(&mut self, mut h: Header, name: &[u8], link: &[u8], data: &[u8]) -> &mut Self {
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(&mut self, path: &str, mode: u32, uid: u64, gid: u64, data: &[u8]) -> &mut Self {
        let mut h = Self::header(EntryType::Regular, mode, uid, gid, data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    fn dir(&mut self, path: &str, mode: u32, uid: u64, gid: u64) -> &mut Self {
        let mut h = Self::header(EntryType::Directory, mode, uid, gid, 0);
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    fn link(&mut self, kind: EntryType, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(kind, 0o777, 0, 0, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    fn node(
        &mut self,
        kind: EntryType,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let mut h = Self::header(kind, mode, 0, 0, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// A PAX extended header applying to the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = 1 + k.len() + 1 + v.len() + 1;
            let mut len = body_len + 1;
            while len != body_len + len.to_string().len() {
                len = body_len + len.to_string().len();
            }
            write!(data, "{len} {k}=").unwrap();
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let h = Self::header(EntryType::XHeader, 0o644, 0, 0, data.len() as u64);
        self.raw(h, b"PaxHeaders/x", b"", &data)
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn apply(tar: &[u8], dest: &Path) -> Result<skiff_unpack::Stats, Error> {
    unpack(tar, Compression::Detect, dest, &Options::default())
}

fn meta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(p, name, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

#[test]
fn every_entry_type_with_metadata() {
    if !is_root() {
        return;
    }
    let long = format!("data/{}/{}.txt", "d".repeat(80), "f".repeat(90));
    let pax_name = format!("data/{}.pax", "p".repeat(150));
    let mut l = Layer::new();
    l.dir("data", 0o755, 0, 0)
        .file("data/hello.txt", 0o644, 0, 0, b"hello\n")
        .file("data/setuid", 0o4755, 0, 0, b"suid")
        .dir("data/setgid-dir", 0o2775, 0, 1000)
        .dir("data/sticky", 0o1777, 0, 0)
        .file("data/owned.txt", 0o640, 1000, 1000, b"owned")
        .link(EntryType::Symlink, "data/sym-rel", "hello.txt")
        .link(EntryType::Symlink, "data/sym-abs", "/etc/passwd")
        .file("data/hl-a", 0o644, 0, 0, b"hard link")
        .link(EntryType::Link, "data/hl-b", "data/hl-a")
        .node(EntryType::Char, "data/null", 0o666, 1, 3)
        .node(EntryType::Block, "data/loop", 0o660, 7, 0)
        .node(EntryType::Fifo, "data/fifo", 0o644, 0, 0)
        .file(&long, 0o644, 0, 0, b"long")
        .file("usr/share/implicit/deep/file.txt", 0o644, 0, 0, b"implicit");
    l.pax(&[("path", pax_name.as_bytes())]);
    l.file("data/short-stand-in", 0o644, 0, 0, b"pax path");
    l.pax(&[
        ("uid", b"3000000"),
        ("gid", b"3000001"),
        ("SCHILY.xattr.user.test", b"value"),
        ("SCHILY.xattr.trusted.skiff", b"t"),
        ("mtime", b"1700000001.5"),
    ]);
    l.file("data/big-uid.txt", 0o600, 0, 0, b"big");
    let tar = l.finish();

    let tmp = tempfile::tempdir().unwrap();
    let stats = apply(&tar, tmp.path()).unwrap();
    let d = tmp.path();
    assert_eq!(stats.bytes, tar.len() as u64);
    assert_eq!(stats.diff_id, format!("sha256:{:x}", Sha256::digest(&tar)));
    assert_eq!(stats.whiteouts, 0);
    assert_eq!(stats.entries, 17);

    assert_eq!(fs::read(d.join("data/hello.txt")).unwrap(), b"hello\n");
    let m = meta(&d.join("data/setuid"));
    assert_eq!(m.mode() & 0o7777, 0o4755);
    let m = meta(&d.join("data/setgid-dir"));
    assert_eq!((m.mode() & 0o7777, m.gid()), (0o2775, 1000));
    assert_eq!(meta(&d.join("data/sticky")).mode() & 0o7777, 0o1777);
    let m = meta(&d.join("data/owned.txt"));
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 1000, 1000));
    assert_eq!(
        fs::read_link(d.join("data/sym-rel")).unwrap(),
        Path::new("hello.txt")
    );
    assert_eq!(
        fs::read_link(d.join("data/sym-abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(meta(&d.join("data/sym-rel")).mtime(), MTIME as i64);
    let (a, b) = (meta(&d.join("data/hl-a")), meta(&d.join("data/hl-b")));
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    let m = meta(&d.join("data/null"));
    assert!(m.file_type().is_char_device());
    assert_eq!(
        (m.rdev(), m.mode() & 0o7777),
        (rustix::fs::makedev(1, 3), 0o666)
    );
    let m = meta(&d.join("data/loop"));
    assert!(m.file_type().is_block_device());
    assert_eq!(m.rdev(), rustix::fs::makedev(7, 0));
    assert!(meta(&d.join("data/fifo")).file_type().is_fifo());
    assert_eq!(fs::read(d.join(&long)).unwrap(), b"long");
    assert_eq!(fs::read(d.join(&pax_name)).unwrap(), b"pax path");
    assert!(!d.join("data/short-stand-in").exists());
    let m = meta(&d.join("usr/share/implicit"));
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o755, 0));
    let big = d.join("data/big-uid.txt");
    let m = meta(&big);
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (3_000_000, 3_000_001, 0o600)
    );
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_001, 500_000_000));
    assert_eq!(xattr(&big, "user.test").as_deref(), Some(&b"value"[..]));
    assert_eq!(xattr(&big, "trusted.skiff").as_deref(), Some(&b"t"[..]));
    // Directory mtimes survive the entries added into them.
    assert_eq!(meta(&d.join("data")).mtime(), MTIME as i64);
    assert_eq!(meta(&d.join("data/hello.txt")).mtime(), MTIME as i64);
}

fn whiteout_layer() -> Vec<u8> {
    let mut l = Layer::new();
    l.dir("opt/app", 0o755, 0, 0);
    let h = Layer::header(EntryType::Regular, 0o644, 0, 0, 0);
    l.raw(h.clone(), b"opt/app/.wh..wh..opq", b"", b"")
        .file("opt/app/new.txt", 0o644, 0, 0, b"new")
        .raw(h.clone(), b"bin/.wh.wget", b"", b"")
        .raw(h, b"srv/.wh.gone", b"", b"");
    l.finish()
}

#[test]
fn whiteouts_become_overlay_devices_and_opaque_xattrs() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let stats = apply(&whiteout_layer(), tmp.path()).unwrap();
    assert_eq!(stats.whiteouts, 3);
    let d = tmp.path();
    for p in ["bin/wget", "srv/gone"] {
        let m = meta(&d.join(p));
        assert!(m.file_type().is_char_device(), "{p}");
        assert_eq!(m.rdev(), 0, "{p}");
    }
    assert_eq!(
        xattr(&d.join("opt/app"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(d.join("opt/app/new.txt").exists());
    assert!(!d.join("opt/app/.wh..wh..opq").exists());
    assert!(!d.join("bin/.wh.wget").exists());
}

#[test]
fn compressed_layers() {
    if !is_root() {
        return;
    }
    let mut l = Layer::new();
    l.file("a/b.txt", 0o644, 0, 0, &b"compress me ".repeat(1000));
    let tar = l.finish();
    let diff_id = format!("sha256:{:x}", Sha256::digest(&tar));

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst =
        ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest);

    for (name, bytes, compression) in [
        ("gzip", &gz, Compression::Gzip),
        ("gzip detect", &gz, Compression::Detect),
        ("zstd", &zst, Compression::Zstd),
        ("zstd detect", &zst, Compression::Detect),
        ("plain", &tar, Compression::None),
        ("plain detect", &tar, Compression::Detect),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let stats = unpack(&bytes[..], compression, tmp.path(), &Options::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(stats.diff_id, diff_id, "{name}");
        assert_eq!(
            fs::read(tmp.path().join("a/b.txt")).unwrap().len(),
            12_000,
            "{name}"
        );
    }
}

/// Unpacks a hostile layer into `outer/dest` and checks it failed naming `entry` and that
/// nothing outside `dest` changed.
fn assert_refused(tar: &[u8], entry: &str) -> Error {
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("dest");
    fs::create_dir(&dest).unwrap();
    fs::write(outer.path().join("sentinel"), b"sentinel").unwrap();
    let err = apply(tar, &dest).expect_err("hostile layer accepted");
    let msg = err.to_string();
    assert!(msg.contains(entry), "error {msg:?} does not name {entry}");
    let mut names: Vec<_> = fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["dest", "sentinel"],
        "something was written outside dest"
    );
    assert_eq!(
        fs::read(outer.path().join("sentinel")).unwrap(),
        b"sentinel"
    );
    err
}

#[test]
fn hostile_layers_are_refused() {
    if !is_root() {
        return;
    }
    let file = |size| Layer::header(EntryType::Regular, 0o644, 0, 0, size);

    let mut l = Layer::new();
    l.raw(file(4), b"../evil", b"", b"evil");
    let err = assert_refused(&l.finish(), "../evil");
    assert!(matches!(err, Error::PathEscape { .. }), "{err}");

    let mut l = Layer::new();
    l.raw(file(4), b"a/../../evil", b"", b"evil");
    let err = assert_refused(&l.finish(), "a/../../evil");
    assert!(matches!(err, Error::PathEscape { .. }), "{err}");

    // A symlink pointing out of dest, then a write through it.
    let mut l = Layer::new();
    l.raw(
        Layer::header(EntryType::Symlink, 0o777, 0, 0, 0),
        b"out",
        b"..",
        b"",
    )
    .raw(file(4), b"out/evil", b"", b"evil");
    let err = assert_refused(&l.finish(), "out/evil");
    assert!(matches!(err, Error::SymlinkEscape { .. }), "{err}");

    // An absolute symlink to the host's root.
    let mut l = Layer::new();
    l.link(EntryType::Symlink, "root", "/")
        .raw(file(4), b"root/evil", b"", b"evil");
    let err = assert_refused(&l.finish(), "root/evil");
    assert!(matches!(err, Error::SymlinkEscape { .. }), "{err}");

    // A chain: a -> b -> ../.. ; write through a.
    let mut l = Layer::new();
    l.link(EntryType::Symlink, "a", "b")
        .raw(
            Layer::header(EntryType::Symlink, 0o777, 0, 0, 0),
            b"b",
            b"../..",
            b"",
        )
        .raw(file(4), b"a/evil", b"", b"evil");
    let err = assert_refused(&l.finish(), "a/evil");
    assert!(matches!(err, Error::SymlinkEscape { .. }), "{err}");

    // Hard links to the host's /etc/passwd, absolute and relative.
    let mut l = Layer::new();
    l.link(EntryType::Link, "passwd", "/etc/passwd");
    let err = assert_refused(&l.finish(), "passwd");
    assert!(matches!(err, Error::HardlinkTargetMissing { .. }), "{err}");
    let mut l = Layer::new();
    l.raw(
        Layer::header(EntryType::Link, 0o644, 0, 0, 0),
        b"passwd",
        b"../../../../etc/passwd",
        b"",
    );
    let err = assert_refused(&l.finish(), "passwd");
    assert!(matches!(err, Error::HardlinkEscape { .. }), "{err}");

    // A hard link through a symlink pointing out.
    let mut l = Layer::new();
    l.link(EntryType::Symlink, "etc", "/etc")
        .link(EntryType::Link, "passwd", "etc/passwd");
    let err = assert_refused(&l.finish(), "passwd");
    assert!(matches!(err, Error::HardlinkEscape { .. }), "{err}");

    // A symlink that already exists in dest (the caller's snapshot) pointing out.
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("dest");
    fs::create_dir(&dest).unwrap();
    std::os::unix::fs::symlink(outer.path(), dest.join("pre")).unwrap();
    let mut l = Layer::new();
    l.file("pre/evil", 0o644, 0, 0, b"evil");
    let err = apply(&l.finish(), &dest).unwrap_err();
    assert!(matches!(err, Error::SymlinkEscape { .. }), "{err}");
    assert!(!outer.path().join("evil").exists());
}

#[test]
fn truncated_and_garbage_streams_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut l = Layer::new();
    l.file("big.bin", 0o644, 0, 0, &[7u8; 10_000]);
    let tar = l.finish();
    assert!(apply(&tar[..3000], tmp.path()).is_err());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    assert!(unpack(
        &gz[..gz.len() / 2],
        Compression::Gzip,
        tmp.path(),
        &Options::default()
    )
    .is_err());
    assert!(unpack(
        &b"\x28\xb5\x2f\xfdgarbage"[..],
        Compression::Detect,
        tmp.path(),
        &Options::default()
    )
    .is_err());
}

#[test]
fn overlay_mount_hides_whited_out_files() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (l1, l2, mnt) = (
        tmp.path().join("l1"),
        tmp.path().join("l2"),
        tmp.path().join("mnt"),
    );
    for d in [&l1, &l2, &mnt] {
        fs::create_dir(d).unwrap();
    }
    let mut l = Layer::new();
    l.file("bin/wget", 0o755, 0, 0, b"wget")
        .file("bin/sh", 0o755, 0, 0, b"sh")
        .file("opt/app/old.txt", 0o644, 0, 0, b"old")
        .file("srv/gone/x", 0o644, 0, 0, b"x");
    apply(&l.finish(), &l1).unwrap();
    apply(&whiteout_layer(), &l2).unwrap();

    let opts = format!("lowerdir={}:{}", l2.display(), l1.display());
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&mnt)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "skipping: overlay mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let checks = || {
        assert!(
            !mnt.join("bin/wget").exists(),
            "whiteout did not hide bin/wget"
        );
        assert!(mnt.join("bin/sh").exists());
        assert!(!mnt.join("srv/gone").exists());
        assert!(
            !mnt.join("opt/app/old.txt").exists(),
            "opaque dir did not hide old.txt"
        );
        assert_eq!(fs::read(mnt.join("opt/app/new.txt")).unwrap(), b"new");
    };
    let result = std::panic::catch_unwind(checks);
    let _ = Command::new("umount").arg(&mnt).status();
    result.unwrap();
}

#[test]
fn whiteout_and_entry_of_the_same_layer() {
    if !is_root() {
        return;
    }
    // A whiteout only hides lower layers: `keep` (before its whiteout) stays; `dir` (after
    // its whiteout) replaces the lower directory, so it becomes opaque.
    let wh = Layer::header(EntryType::Regular, 0o644, 0, 0, 0);
    let mut l = Layer::new();
    l.file("keep", 0o644, 0, 0, b"keep")
        .raw(wh.clone(), b".wh.keep", b"", b"")
        .raw(wh, b".wh.dir", b"", b"")
        .dir("dir", 0o755, 0, 0)
        .file("dir/new", 0o644, 0, 0, b"new");
    let tmp = tempfile::tempdir().unwrap();
    apply(&l.finish(), tmp.path()).unwrap();
    assert_eq!(fs::read(tmp.path().join("keep")).unwrap(), b"keep");
    let dir = tmp.path().join("dir");
    assert!(meta(&dir).is_dir());
    assert_eq!(
        xattr(&dir, "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
}

#[test]
fn zstd_with_several_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let mut l = Layer::new();
    l.file("a.txt", 0o644, 0, 0, &b"first frame ".repeat(500))
        .file("b.txt", 0o644, 0, 0, &b"second frame ".repeat(500));
    let tar = l.finish();
    let (one, two) = tar.split_at(2048);
    let level = ruzstd::encoding::CompressionLevel::Fastest;
    let mut zst = ruzstd::encoding::compress_to_vec(one, level);
    zst.extend(ruzstd::encoding::compress_to_vec(two, level));
    let opts = Options {
        preserve_ownership: false,
        preserve_xattrs: false,
        ..Default::default()
    };
    let stats = unpack(&zst[..], Compression::Detect, tmp.path(), &opts).unwrap();
    assert_eq!(stats.diff_id, format!("sha256:{:x}", Sha256::digest(&tar)));
    assert_eq!(fs::read(tmp.path().join("b.txt")).unwrap().len(), 6500);
}

/// The shared multilayer fixture (whiteouts, opaque dirs, dir↔file replacements, ...), if
/// built (`shared/fixtures/images.sh --only multilayer`): unpack each layer of every
/// compression variant, check the diffIDs, mount the overlay and compare the merged tree with
/// the expected one using `ocifix.py compare`.
#[test]
fn shared_multilayer_fixture_matches_expected_tree() {
    if !is_root() {
        return;
    }
    let fixtures = std::env::var("FIXTURES_DIR").unwrap_or_else(|_| "/var/tmp/oci-fixtures".into());
    let layout = Path::new(&fixtures).join("images/oci/multilayer");
    let expected = Path::new(&fixtures).join("images/expected/multilayer.tree.json");
    let ocifix =
        std::env::var("OCIFIX").unwrap_or_else(|_| "/work/shared/fixtures/ocifix.py".into());
    if !layout.exists() || !expected.exists() || !Path::new(&ocifix).exists() {
        eprintln!("skipping: multilayer fixture or ocifix.py not found (build it with images.sh)");
        return;
    }
    let json = |digest: &str| -> serde_json::Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    for desc in index["manifests"].as_array().unwrap() {
        let tag = desc["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        let manifest = json(desc["digest"].as_str().unwrap());
        let config = json(manifest["config"]["digest"].as_str().unwrap());
        let tmp = tempfile::tempdir().unwrap();
        let mut lowers = Vec::new();
        for (i, layer) in manifest["layers"].as_array().unwrap().iter().enumerate() {
            let hex = layer["digest"]
                .as_str()
                .unwrap()
                .strip_prefix("sha256:")
                .unwrap();
            let blob = fs::File::open(layout.join("blobs/sha256").join(hex)).unwrap();
            let dir = tmp.path().join(format!("l{i}"));
            fs::create_dir(&dir).unwrap();
            let stats = unpack(
                std::io::BufReader::new(blob),
                Compression::Detect,
                &dir,
                &Options::default(),
            )
            .unwrap_or_else(|e| panic!("{tag} layer {i}: {e}"));
            assert_eq!(
                stats.diff_id,
                config["rootfs"]["diff_ids"][i].as_str().unwrap(),
                "{tag} layer {i}"
            );
            lowers.insert(0, dir.display().to_string());
        }
        let mnt = tmp.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let opts = format!("lowerdir={}", lowers.join(":"));
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&mnt)
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "skipping: overlay mount failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let tree = Command::new("python3")
            .arg(&ocifix)
            .arg("tree")
            .arg(&mnt)
            .output();
        let _ = Command::new("umount").arg(&mnt).status();
        let tree = tree.unwrap();
        assert!(
            tree.status.success(),
            "ocifix tree: {}",
            String::from_utf8_lossy(&tree.stderr)
        );
        let actual = tmp.path().join("actual.json");
        fs::write(&actual, &tree.stdout).unwrap();
        let cmp = Command::new("python3")
            .arg(&ocifix)
            .arg("compare")
            .arg(&expected)
            .arg(&actual)
            .output()
            .unwrap();
        assert!(
            cmp.status.success(),
            "{tag}: merged tree differs from the expected one:\n{}{}",
            String::from_utf8_lossy(&cmp.stdout),
            String::from_utf8_lossy(&cmp.stderr)
        );
    }
}

/// `docker cp` extraction: `.wh.` names stay plain files, the owner is forced, no hashing, and a
/// directory is never replaced by a file (nor the reverse) with `no_overwrite_dir_non_dir`.
#[test]
fn copy_options_keep_whiteout_names_force_the_owner_and_refuse_dir_swaps() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("d")).unwrap();
    fs::write(tmp.path().join("f"), b"old").unwrap();
    let opts = Options {
        whiteouts: false,
        no_overwrite_dir_non_dir: true,
        owner: Some((1234, 4321)),
        diff_id: false,
        ..Default::default()
    };
    let mut l = Layer::new();
    l.file(".wh.kept", 0o644, 0, 0, b"plain")
        .file("new.txt", 0o640, 7, 7, b"new");
    let tar = l.finish();
    let stats = unpack(&tar[..], Compression::None, tmp.path(), &opts).unwrap();
    assert_eq!(stats.diff_id, "", "hashed without diff_id");
    assert_eq!(stats.bytes, tar.len() as u64);
    assert_eq!(fs::read(tmp.path().join(".wh.kept")).unwrap(), b"plain");
    let meta = fs::metadata(tmp.path().join("new.txt")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (1234, 4321, 0o640)
    );

    let mut l = Layer::new();
    l.file("d", 0o644, 0, 0, b"file over a dir");
    let err = unpack(&l.finish()[..], Compression::None, tmp.path(), &opts).unwrap_err();
    assert!(matches!(err, Error::Overwrite { .. }), "{err}");
    assert!(tmp.path().join("d").is_dir());

    let mut l = Layer::new();
    l.dir("f", 0o755, 0, 0);
    let err = unpack(&l.finish()[..], Compression::None, tmp.path(), &opts).unwrap_err();
    assert!(
        err.to_string().contains("cannot overwrite non-directory"),
        "{err}"
    );
    assert_eq!(fs::read(tmp.path().join("f")).unwrap(), b"old");
}
