//! Crash safety of the metadata: a child process changes tags and images in a loop and is
//! killed with SIGKILL at random moments; the store must always reopen consistent.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff_store::{Digest, Driver, Reference, Store, StoreOptions};

const CHILD_ENV: &str = "SKIFF_STORE_CRASH_CHILD";

fn opts() -> StoreOptions {
    StoreOptions {
        driver: Driver::Vfs,
        unpack: skiff_unpack::Options {
            // Works without root too.
            preserve_ownership: false,
            preserve_xattrs: false,
            ..Default::default()
        },
    }
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn sha(data: &[u8]) -> Digest {
    use sha2::Digest as _;
    Digest::parse(&format!("sha256:{:x}", sha2::Sha256::digest(data))).unwrap()
}

/// Stores a one-layer image whose single file holds `label`; returns the manifest digest.
fn make_image(s: &Store, label: &str) -> Digest {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(label.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "label", label.as_bytes()).unwrap();
    let layer = b.into_inner().unwrap();
    let ld = sha(&layer);
    s.put_blob(&ld, &layer[..]).unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [ld.to_string()]},
    }))
    .unwrap();
    let cd = sha(&config);
    s.put_blob(&cd, &config[..]).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld.to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let md = sha(&manifest);
    s.put_blob(&md, &manifest[..]).unwrap();
    md
}

/// The child: mutates the store forever (until killed).
#[test]
fn crash_child() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let s = Store::open(&root, opts()).unwrap();
    let manifests: Vec<Digest> = std::fs::read_to_string(format!("{root}/manifests"))
        .unwrap()
        .lines()
        .map(|l| Digest::parse(l).unwrap())
        .collect();
    let lease = s.lease();
    for m in &manifests {
        lease.protect_blob(m);
    }
    for img in s.images() {
        lease.protect_blob(&img.id);
        for l in &img.layers {
            lease.protect_blob(&l.blob);
        }
    }
    let mut i: u64 = std::process::id().into();
    loop {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let tag = r(&format!("app:{}", (i >> 33) % 7));
        let m = &manifests[((i >> 40) % manifests.len() as u64) as usize];
        let _ = match (i >> 20) % 6 {
            0 | 1 => s
                .put_image(m, std::slice::from_ref(&tag), &[r(&format!("app@{m}"))])
                .map(|_| ()),
            2 => s.tag(&format!("app:{}", (i >> 45) % 7), &tag),
            3 => s.untag(&tag).map(|_| ()),
            4 => s
                .remove_image(&tag.to_string(), (i >> 50) & 1 == 0)
                .map(|_| ()),
            _ => s.gc().map(|_| ()),
        };
    }
}

fn check(s: &Store) -> String {
    let mut tags = HashSet::new();
    for img in s.images() {
        assert_eq!(sha(&s.raw_config(&img.id.to_string()).unwrap()), img.id);
        assert!(s.has_blob(&img.manifest), "manifest of {} missing", img.id);
        for l in &img.layers {
            assert!(s.has_blob(&l.blob), "layer blob of {} missing", img.id);
            assert!(
                s.has_snapshot(&l.chain_id),
                "snapshot of {} missing",
                img.id
            );
        }
        for t in img.repo_tags.iter().chain(&img.repo_digests) {
            assert!(tags.insert(t.clone()), "{t} points to two images");
            assert_eq!(s.image(&t.to_string()).unwrap().id, img.id);
        }
    }
    std::fs::read_to_string(s.root().join("images.json")).unwrap_or_default()
}

#[test]
fn metadata_survives_sigkill_at_any_moment() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    {
        let s = Store::open(&root, opts()).unwrap();
        let ms: Vec<String> = (0..3)
            .map(|i| make_image(&s, &format!("image {i}")).to_string())
            .collect();
        for (i, m) in ms.iter().enumerate() {
            s.put_image(&Digest::parse(m).unwrap(), &[r(&format!("app:{i}"))], &[])
                .unwrap();
        }
        std::fs::write(dir.path().join("manifests"), ms.join("\n")).unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let mut seed: u64 = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
    let mut states = HashSet::new();
    let mut iterations = 0;
    while start.elapsed() < Duration::from_secs(6) && iterations < 150 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(5 + seed % 60));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let s = Store::open(&root, opts()).expect("the store must reopen after SIGKILL");
        states.insert(check(&s));
        // A gc after reopening keeps every image whole.
        s.gc().unwrap();
        check(&s);
        // Put back the blobs gc took from deleted images, for the next child.
        for i in 0..3 {
            make_image(&s, &format!("image {i}"));
        }
        iterations += 1;
    }
    eprintln!("{iterations} kills, {} distinct states seen", states.len());
    assert!(iterations >= 20, "only {iterations} iterations");
    assert!(
        states.len() >= 5,
        "the child hardly changed anything: {} states",
        states.len()
    );
}
