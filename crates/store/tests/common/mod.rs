//! Helpers for the root integration tests: layer and image builders, tree listings.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest as _, Sha256};
use skiff_store::{Digest, Image, Reference, Store, StoreOptions};

pub const MTIME: u64 = 1_700_000_000;

/// Root is needed for chown, whiteout devices, trusted xattrs and mounts.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

pub fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

pub fn digest(data: &[u8]) -> Digest {
    Digest::parse(&format!("sha256:{}", sha256_hex(data))).unwrap()
}

pub fn busybox() -> Vec<u8> {
    fs::read("/bin/busybox").expect("/bin/busybox is missing: apt-get install busybox-static")
}

pub fn open(dir: &Path, driver: skiff_store::Driver) -> Store {
    Store::open(
        dir,
        StoreOptions {
            driver,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

/// Builds a layer tar the way image builders write them.
pub struct LayerBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> Self {
        LayerBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(size);
        h.set_mtime(MTIME);
        h
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.dir_owned(path, mode, 0, 0)
    }

    pub fn dir_owned(&mut self, path: &str, mode: u32, uid: u64, gid: u64) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, uid, gid, 0);
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.file_owned(path, mode, 0, 0, data)
    }

    pub fn file_owned(
        &mut self,
        path: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, uid, gid, data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn file_xattr(&mut self, path: &str, data: &[u8], name: &str, value: &[u8]) -> &mut Self {
        let key = format!("SCHILY.xattr.{name}");
        self.b
            .append_pax_extensions([(key.as_str(), value)])
            .unwrap();
        self.file(path, 0o644, data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0, 0, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(&mut self, path: &str, target: &str, mode: u32) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Link, mode, 0, 0, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn fifo(&mut self, path: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Fifo, 0o644, 0, 0, 0);
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let wh = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&wh, 0o644, b"")
    }

    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(&format!("{dir}/.wh..wh..opq"), 0o644, b"")
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The three layers of the test image: busybox base, a layer of special files, a layer of
/// whiteouts and an opaque directory.
pub fn test_layers() -> Vec<Vec<u8>> {
    let bb = busybox();
    let mut l1 = LayerBuilder::new();
    l1.dir("bin", 0o755)
        .file("bin/busybox", 0o755, &bb)
        .symlink("bin/sh", "busybox")
        .symlink("bin/ls", "busybox")
        .symlink("bin/cat", "busybox")
        .symlink("bin/wget", "busybox")
        .dir("etc", 0o755)
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .dir("tmp", 0o1777)
        .dir("root", 0o700)
        .dir("home", 0o755)
        .dir_owned("home/app", 0o755, 1000, 1000)
        .dir("srv", 0o755)
        .dir("srv/gone", 0o755)
        .file("srv/gone/a.txt", 0o644, b"a")
        .dir("srv/gone/sub", 0o755)
        .file("srv/gone/sub/b.txt", 0o644, b"b")
        .dir("opt", 0o755)
        .dir("opt/app", 0o755)
        .file("opt/app/old1.txt", 0o644, b"old1")
        .dir("opt/app/sub", 0o755)
        .file("opt/app/sub/old3.txt", 0o644, b"old3")
        .dir("data", 0o755)
        .file("data/todelete.txt", 0o644, b"bye")
        .file("data/hello.txt", 0o644, b"hello v1");
    let l1 = l1.finish();
    let mut l2 = LayerBuilder::new();
    l2.dir("data", 0o755)
        .file("data/hl-a", 0o644, b"hard linked content")
        .hardlink("data/hl-b", "data/hl-a", 0o644)
        .file("data/setuid", 0o4755, b"#!/bin/sh\n")
        .file_owned("data/owned", 0o640, 1000, 1000, b"mine")
        .file_owned("data/bigid", 0o644, 3_000_000, 3_000_001, b"big ids")
        .fifo("data/fifo")
        .file_xattr("data/xattr", b"x", "user.skiff", b"yes")
        .dir("usr/share/implicit/deep", 0o755)
        .file("usr/share/implicit/deep/file.txt", 0o644, b"deep");
    let l2 = l2.finish();
    let mut l3 = LayerBuilder::new();
    l3.whiteout("bin/wget")
        .whiteout("data/todelete.txt")
        .whiteout("srv/gone")
        .dir("opt/app", 0o755)
        .opaque("opt/app")
        .file("opt/app/new1.txt", 0o644, b"new1")
        .file("data/hello.txt", 0o644, b"hello v2")
        .file("etc/motd", 0o644, b"welcome\n");
    let l3 = l3.finish();
    vec![l1, l2, l3]
}

/// Stores an image made of `layers` (plain tars, stored gzip'd if `gz`); returns it.
pub fn put_image(store: &Store, layers: &[Vec<u8>], gz: bool, tags: &[&str]) -> Image {
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for l in layers {
        diff_ids.push(format!("sha256:{}", sha256_hex(l)));
        let blob = if gz { gzip(l) } else { l.clone() };
        let d = digest(&blob);
        store.put_blob(&d, &blob[..]).unwrap();
        descs.push(serde_json::json!({
            "mediaType": if gz { "application/vnd.oci.image.layer.v1.tar+gzip" } else { "application/vnd.oci.image.layer.v1.tar" },
            "digest": d.to_string(), "size": blob.len(),
        }));
    }
    let history: Vec<_> = (0..layers.len())
        .map(|i| serde_json::json!({"created": "2023-11-14T22:13:20Z", "created_by": format!("layer {i}")}))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cd = digest(&config);
    store.put_blob(&cd, &config[..]).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
        "layers": descs,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let md = digest(&manifest);
    store.put_blob(&md, &manifest[..]).unwrap();
    let tags: Vec<Reference> = tags.iter().map(|t| Reference::parse(t).unwrap()).collect();
    store.put_image(&md, &tags, &[]).unwrap()
}

/// A listing of a tree: path -> "type mode uid:gid size content|target xattrs", plus the
/// hard link groups.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = format!("/{}", p.strip_prefix(root).unwrap().display());
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let (kind, what) = if ft.is_dir() {
                stack.push(p.clone());
                ("dir", String::new())
            } else if ft.is_symlink() {
                ("symlink", fs::read_link(&p).unwrap().display().to_string())
            } else if ft.is_file() {
                if m.nlink() > 1 {
                    inodes
                        .entry((m.dev(), m.ino()))
                        .or_default()
                        .push(rel.clone());
                }
                ("file", sha256_hex(&fs::read(&p).unwrap()))
            } else if ft.is_fifo() {
                ("fifo", String::new())
            } else if ft.is_char_device() {
                ("char", format!("{}", m.rdev()))
            } else {
                ("other", String::new())
            };
            let mut xattrs = String::new();
            let mut buf = vec![0u8; 1024];
            if let Ok(v) = rustix::fs::lgetxattr(&p, "user.skiff", &mut buf) {
                xattrs = format!(" user.skiff={}", String::from_utf8_lossy(&buf[..v]));
            }
            let size = if ft.is_file() { m.len() } else { 0 };
            let mode = if ft.is_symlink() {
                0o777
            } else {
                m.mode() & 0o7777
            };
            out.insert(
                rel,
                format!(
                    "{kind} {mode:04o} {}:{} {size} {what}{xattrs}",
                    m.uid(),
                    m.gid()
                ),
            );
        }
    }
    for mut group in inodes.into_values() {
        group.sort();
        let g = group.join(",");
        for p in &group {
            if let Some(v) = out.get_mut(p) {
                v.push_str(&format!(" links={g}"));
            }
        }
    }
    out
}

/// Files and dirs under the store's content, snapshot and metadata areas (for "unchanged").
pub fn store_listing(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for d in ["content", "snapshots", "l", "containers"] {
        let mut stack = vec![store.root().join(d)];
        while let Some(p) = stack.pop() {
            for e in fs::read_dir(&p).unwrap().flatten() {
                let path = e.path();
                out.push(
                    path.strip_prefix(store.root())
                        .unwrap()
                        .display()
                        .to_string(),
                );
                if e.file_type().unwrap().is_dir() && !path.ends_with("diff") {
                    stack.push(path);
                }
            }
        }
    }
    out.push(fs::read_to_string(store.root().join("images.json")).unwrap_or_default());
    out.sort();
    out
}

/// Whether anything under `root` is mounted.
pub fn mounts_under(root: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&*root.to_string_lossy()))
        .map(str::to_owned)
        .collect()
}

/// Unmounts a container's rootfs when dropped (tests must not leave mounts behind).
pub struct MountGuard<'a> {
    pub store: &'a Store,
    pub id: String,
}

impl Drop for MountGuard<'_> {
    fn drop(&mut self) {
        let _ = self.store.unmount_rootfs(&self.id);
    }
}

/// Checks the merged tree of the test image.
pub fn check_merged(t: &BTreeMap<String, String>) {
    for gone in [
        "/bin/wget",
        "/data/todelete.txt",
        "/srv/gone",
        "/srv/gone/a.txt",
        "/opt/app/old1.txt",
        "/opt/app/sub",
    ] {
        assert!(!t.contains_key(gone), "{gone} should be hidden");
    }
    for there in [
        "/bin/busybox",
        "/bin/sh",
        "/etc/motd",
        "/opt/app/new1.txt",
        "/data/fifo",
        "/usr/share/implicit/deep/file.txt",
    ] {
        assert!(t.contains_key(there), "{there} is missing");
    }
    assert!(t["/srv"].starts_with("dir 0755"));
    assert!(t["/tmp"].starts_with("dir 1777 0:0"), "{}", t["/tmp"]);
    assert!(t["/root"].starts_with("dir 0700"));
    assert!(t["/home/app"].starts_with("dir 0755 1000:1000"));
    assert!(
        t["/data/setuid"].starts_with("file 4755 0:0"),
        "{}",
        t["/data/setuid"]
    );
    assert!(t["/data/owned"].starts_with("file 0640 1000:1000"));
    assert!(t["/data/bigid"].starts_with("file 0644 3000000:3000001"));
    assert!(t["/data/hello.txt"].contains(&sha256_hex(b"hello v2")));
    assert!(
        t["/data/hl-a"].contains("links=/data/hl-a,/data/hl-b"),
        "{}",
        t["/data/hl-a"]
    );
    assert!(
        t["/data/xattr"].contains("user.skiff=yes"),
        "{}",
        t["/data/xattr"]
    );
    assert!(t["/bin/sh"].starts_with("symlink 0777 0:0 0 busybox"));
    assert!(
        !t.keys().any(|k| k.contains(".wh.")),
        "a whiteout file is visible"
    );
    assert!(
        !t.values().any(|v| v.starts_with("char")),
        "a whiteout device is visible"
    );
}
