//! Root integration tests: real layers, real overlay mounts, the vfs driver, import/export,
//! many-layer images, gc.

mod common;

use std::fs;

use common::*;
use skiff_store::{Driver, Error, ErrorKind, ImportOptions, Reference, Removed};

#[test]
fn overlay_containers_share_snapshots_and_stay_isolated() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Driver::Overlay);
    let layers = test_layers();
    let img = put_image(&store, &layers, true, &["test/img:1"]);
    assert_eq!(img.layers.len(), 3);
    let snaps = || fs::read_dir(dir.path().join("snapshots")).unwrap().count() - 1; // minus tmp
    assert_eq!(snaps(), 3);
    // The same layers again (another image sharing them): nothing unpacked again.
    let img2 = put_image(&store, &layers[..2], false, &["test/base:1"]);
    assert_eq!(snaps(), 3);
    assert_eq!(img2.layers[1].chain_id, img.layers[1].chain_id);
    let again = store
        .unpack_layer(
            None,
            &img.layers[0].diff_id,
            std::io::empty(),
            skiff_store::Compression::None,
        )
        .unwrap();
    assert!(!again.created);

    let h1 = store.create_rootfs("c1", "test/img:1").unwrap();
    let h2 = store.create_rootfs("c2", img.short_id()).unwrap();
    assert_eq!(h1.driver, Driver::Overlay);
    let _g1 = MountGuard {
        store: &store,
        id: "c1".into(),
    };
    let _g2 = MountGuard {
        store: &store,
        id: "c2".into(),
    };
    // Concurrent mounts of one rootfs give one overlay.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| store.mount_rootfs("c1").unwrap());
        }
    });
    assert_eq!(
        mounts_under(dir.path()).len(),
        1,
        "{:?}",
        mounts_under(dir.path())
    );
    let m1 = store.mount_rootfs("c1").unwrap();
    let m2 = store.mount_rootfs("c2").unwrap();
    assert_eq!(m1, h1.path);
    assert!(store.is_rootfs_mounted("c1").unwrap());
    // Mounting twice is a no-op.
    assert_eq!(store.mount_rootfs("c1").unwrap(), m1);
    let t1 = tree(&m1);
    check_merged(&t1);
    assert_eq!(t1, tree(&m2));

    // A write in one container is invisible in the other and in the layers.
    fs::write(m1.join("data/new-in-c1"), b"c1").unwrap();
    fs::remove_file(m1.join("data/hello.txt")).unwrap();
    assert!(!m2.join("data/new-in-c1").exists());
    assert!(m2.join("data/hello.txt").exists());
    assert!(h1.upper.as_ref().unwrap().join("data/new-in-c1").exists());
    for l in &img.layers {
        let s = store.snapshot(&l.chain_id).unwrap();
        assert!(!s.path.join("data/new-in-c1").exists());
    }
    assert_eq!(h2.image_id, img.id);

    // The image is in use: rmi refuses without force.
    let err = store.remove_image("test/img:1", false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("c1"), "{err}");

    // The container's changes survive a remount.
    store.unmount_rootfs("c1").unwrap();
    assert!(!store.is_rootfs_mounted("c1").unwrap());
    let m1 = store.mount_rootfs("c1").unwrap();
    assert!(m1.join("data/new-in-c1").exists());
    assert!(!m1.join("data/hello.txt").exists());

    store.remove_rootfs("c1").unwrap();
    store.remove_rootfs("c2").unwrap();
    assert!(mounts_under(dir.path()).is_empty());
    assert_eq!(
        fs::read_dir(dir.path().join("containers")).unwrap().count(),
        0
    );
    assert!(matches!(store.rootfs("c1"), Err(Error::RootfsNotFound(_))));
    drop(_g1);
    drop(_g2);
    assert!(mounts_under(dir.path()).is_empty());
}

#[test]
fn vfs_driver_gives_the_same_tree() {
    require_root!();
    let layers = test_layers();
    let d1 = tempfile::tempdir().unwrap();
    let overlay = open(d1.path(), Driver::Overlay);
    put_image(&overlay, &layers, true, &["img"]);
    overlay.create_rootfs("o", "img").unwrap();
    let _g = MountGuard {
        store: &overlay,
        id: "o".into(),
    };
    let merged = tree(&overlay.mount_rootfs("o").unwrap());

    let d2 = tempfile::tempdir().unwrap();
    let vfs = open(d2.path(), Driver::Vfs);
    put_image(&vfs, &layers, false, &["img"]);
    let h = vfs.create_rootfs("v", "img").unwrap();
    assert_eq!(h.driver, Driver::Vfs);
    assert_eq!(vfs.mount_rootfs("v").unwrap(), h.path);
    let copied = tree(&h.path);
    check_merged(&copied);
    assert_eq!(merged, copied);
    // A write goes to the copy only.
    fs::write(h.path.join("etc/motd"), b"changed").unwrap();
    let snap = vfs
        .snapshot(&vfs.image("img").unwrap().layers[2].chain_id)
        .unwrap();
    assert_eq!(fs::read(snap.path.join("etc/motd")).unwrap(), b"welcome\n");
    vfs.remove_rootfs("v").unwrap();
    assert!(!h.path.exists());
    overlay.remove_rootfs("o").unwrap();
}

#[test]
fn export_then_import_gives_the_same_tree() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Driver::Overlay);
    put_image(&store, &test_layers(), true, &["img"]);
    store.create_rootfs("c", "img").unwrap();
    let _g = MountGuard {
        store: &store,
        id: "c".into(),
    };
    let m = store.mount_rootfs("c").unwrap();
    fs::write(m.join("root/added"), b"added").unwrap();
    let merged = tree(&m);
    store.unmount_rootfs("c").unwrap();

    // Export mounts and unmounts by itself.
    let mut tar = Vec::new();
    store.export_rootfs("c", &mut tar).unwrap();
    assert!(!store.is_rootfs_mounted("c").unwrap());

    let opts = ImportOptions {
        tag: Some(Reference::parse("imported:1").unwrap()),
        message: Some("from c".into()),
        ..Default::default()
    };
    let img = store
        .import(&gzip(&tar)[..], skiff_store::Compression::Detect, &opts)
        .unwrap();
    assert_eq!(img.layers.len(), 1);
    assert_eq!(
        img.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(img.layers[0].diff_id, digest(&tar));
    let details = store.inspect("imported:1").unwrap();
    assert_eq!(
        details.config.rootfs().diff_ids(),
        &vec![digest(&tar).to_string()]
    );
    let hist = store.history("imported:1").unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].comment.as_deref(), Some("from c"));
    assert_eq!(hist[0].id.as_ref(), Some(&img.id));

    store.create_rootfs("i", "imported:1").unwrap();
    let _gi = MountGuard {
        store: &store,
        id: "i".into(),
    };
    let t = tree(&store.mount_rootfs("i").unwrap());
    // The exported tree has the same files (the overlay's own top dir is not compared).
    assert_eq!(t, merged);
    store.remove_rootfs("i").unwrap();
    store.remove_rootfs("c").unwrap();
}

#[test]
fn concurrent_unpacks_of_one_layer() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Driver::Overlay);
    let layer = test_layers().remove(0);
    let gz = gzip(&layer);
    let diff = digest(&layer);
    let created: Vec<bool> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                let store = store.clone();
                let gz = &gz;
                let diff = &diff;
                s.spawn(move || {
                    store
                        .unpack_layer(None, diff, &gz[..], skiff_store::Compression::Gzip)
                        .unwrap()
                        .created
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(created.iter().filter(|c| **c).count() >= 1);
    assert_eq!(
        fs::read_dir(dir.path().join("snapshots")).unwrap().count(),
        2
    );
    assert_eq!(
        fs::read_dir(dir.path().join("snapshots/tmp"))
            .unwrap()
            .count(),
        0
    );
    let s = store.snapshot(&diff).unwrap();
    assert_eq!(fs::read(s.path.join("bin/busybox")).unwrap(), busybox());
    assert_eq!(s.tar_size, layer.len() as u64);
    // A wrong diffID leaves nothing.
    let other = LayerBuilder::new().file("x", 0o644, b"x").finish();
    let err = store
        .unpack_layer(
            None,
            &digest(b"not it"),
            &other[..],
            skiff_store::Compression::None,
        )
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert_eq!(
        fs::read_dir(dir.path().join("snapshots")).unwrap().count(),
        2
    );
    assert_eq!(
        fs::read_dir(dir.path().join("snapshots/tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn many_layers_mount_through_short_links() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Driver::Overlay);
    let mut layers = vec![test_layers().remove(0)];
    for i in 1..64 {
        let mut l = LayerBuilder::new();
        l.file(&format!("layer-{i}"), 0o644, format!("{i}").as_bytes());
        if i > 1 {
            l.whiteout(&format!("layer-{}", i - 1));
        }
        layers.push(l.finish());
    }
    let img = put_image(&store, &layers, false, &["many"]);
    assert_eq!(img.layers.len(), 64);
    store.create_rootfs("m", "many").unwrap();
    let _g = MountGuard {
        store: &store,
        id: "m".into(),
    };
    let m = store.mount_rootfs("m").unwrap();
    assert_eq!(fs::read(m.join("layer-63")).unwrap(), b"63");
    assert!(!m.join("layer-62").exists());
    assert!(m.join("bin/busybox").exists());
    store.remove_rootfs("m").unwrap();

    // 200 layers do not fit in one page of mount options: a clear error.
    for i in 64..200 {
        layers.push(
            LayerBuilder::new()
                .file(&format!("layer-{i}"), 0o644, b"x")
                .finish(),
        );
    }
    put_image(&store, &layers, false, &["toomany"]);
    store.create_rootfs("t", "toomany").unwrap();
    let err = store.mount_rootfs("t").unwrap_err();
    assert!(
        matches!(err, Error::TooManyLayers { layers: 200, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("200 layers"), "{err}");
    store.remove_rootfs("t").unwrap();
    assert!(mounts_under(dir.path()).is_empty());
}

#[test]
fn gc_removes_exactly_the_unreferenced_content() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Driver::Overlay);
    let layers = test_layers();
    let full = put_image(&store, &layers, true, &["full"]);
    let base = put_image(&store, &layers[..1], true, &["base"]);
    let lone = put_image(
        &store,
        &[LayerBuilder::new().file("lone", 0o644, b"1").finish()],
        true,
        &["lone"],
    );
    // Nothing to collect yet, but leftovers of a crash.
    fs::write(dir.path().join("content/tmp/blob-crashed"), b"junk").unwrap();
    fs::create_dir(dir.path().join("snapshots/tmp/unpack-crashed")).unwrap();
    fs::write(dir.path().join(".tmp-statecrash"), b"{").unwrap();
    let r = store.gc().unwrap();
    assert!(r.blobs.is_empty() && r.snapshots.is_empty(), "{r:?}");
    assert_eq!(r.temp_entries, 3);

    // A container keeps the layers of an image deleted by force.
    store.create_rootfs("c", "lone").unwrap();
    assert_eq!(
        store.remove_image("lone", false).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    let out = store.remove_image("lone", true).unwrap();
    assert!(out.contains(&Removed::Deleted(lone.id.clone())));
    let r = store.gc().unwrap();
    let mut expect = vec![
        lone.id.clone(),
        lone.manifest.clone(),
        lone.layers[0].blob.clone(),
    ];
    expect.sort();
    assert_eq!(r.blobs, expect);
    assert!(r.snapshots.is_empty());
    store.remove_rootfs("c").unwrap();
    let r = store.gc().unwrap();
    assert_eq!(r.snapshots, vec![lone.layers[0].chain_id.clone()]);

    // Deleting `full` frees its two top layers, not the base shared with `base`.
    store.remove_image("full", false).unwrap();
    let r = store.gc().unwrap();
    let mut expect = vec![
        full.id.clone(),
        full.manifest.clone(),
        full.layers[1].blob.clone(),
        full.layers[2].blob.clone(),
    ];
    expect.sort();
    assert_eq!(r.blobs, expect);
    let mut expect = vec![
        full.layers[1].chain_id.clone(),
        full.layers[2].chain_id.clone(),
    ];
    expect.sort();
    assert_eq!(r.snapshots, expect);
    assert!(r.bytes > 0);
    assert!(store.has_snapshot(&base.layers[0].chain_id));
    assert!(store.has_blob(&base.layers[0].blob));
    assert_eq!(fs::read_dir(dir.path().join("l")).unwrap().count(), 1);
    store.create_rootfs("b", "base").unwrap();
    store.remove_rootfs("b").unwrap();

    // A lease protects content that no image references yet.
    let lease = store.lease();
    let d = digest(b"leased");
    lease.protect_blob(&d);
    store.put_blob(&d, &b"leased"[..]).unwrap();
    assert!(store.gc().unwrap().blobs.is_empty());
    drop(lease);
    assert_eq!(store.gc().unwrap().blobs, vec![d]);

    // prune: dangling only, then all.
    store.untag(&Reference::parse("base").unwrap()).unwrap();
    let p = store.prune(true).unwrap();
    assert_eq!(p.images, vec![base.id.clone()]);
    assert_eq!(p.gc.snapshots, vec![base.layers[0].chain_id.clone()]);
    assert!(store.images().is_empty());
    assert_eq!(
        fs::read_dir(dir.path().join("content/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(fs::read_dir(dir.path().join("l")).unwrap().count(), 0);
}

/// What a pull does: each layer's download is tee'd into the content store and the
/// unpacker at once, layers in parallel, then the image is recorded.
#[test]
fn pull_like_parallel_tee_into_blobs_and_snapshots() {
    require_root!();
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Driver::Overlay);
    let layers = test_layers();
    let blobs: Vec<Vec<u8>> = layers.iter().map(|l| gzip(l)).collect();
    let diff_ids: Vec<_> = layers.iter().map(|l| digest(l)).collect();
    let chains = skiff_store::chain_ids(&diff_ids);
    for round in 0..2 {
        // Round 1: the snapshots exist; the tee must still store the whole blob.
        if round == 1 {
            for b in &blobs {
                std::fs::remove_file(store.blob_path(&digest(b))).unwrap();
            }
        }
        let lease = store.lease();
        std::thread::scope(|s| {
            for i in 0..layers.len() {
                let (store, lease, blobs, diff_ids, chains) =
                    (&store, &lease, &blobs, &diff_ids, &chains);
                s.spawn(move || {
                    let blob = digest(&blobs[i]);
                    lease.protect_blob(&blob);
                    lease.protect_snapshot(&chains[i]);
                    let mut w = store.blob_writer(Some(&blob)).unwrap();
                    // A "network" that hands out small chunks.
                    let net = blobs[i]
                        .chunks(1000)
                        .map(|c| c.to_vec())
                        .collect::<Vec<_>>()
                        .concat();
                    let mut tee = w.tee(&net[..]);
                    let snap = store
                        .unpack_layer(
                            i.checked_sub(1).map(|p| &chains[p]),
                            &diff_ids[i],
                            &mut tee,
                            skiff_store::Compression::Gzip,
                        )
                        .unwrap();
                    assert_eq!(snap.created, round == 0);
                    std::io::copy(&mut tee, &mut std::io::sink()).unwrap();
                    assert_eq!(w.commit().unwrap(), blob);
                });
            }
        });
        assert!(store.gc().unwrap().blobs.is_empty());
        drop(lease);
    }
    let mut buf = Vec::new();
    store
        .open_blob(&digest(&blobs[0]))
        .unwrap()
        .read_to_end(&mut buf)
        .unwrap();
    assert_eq!(buf, blobs[0]);
    // Nothing references them yet: without the lease, gc takes them.
    let r = store.gc().unwrap();
    assert_eq!(r.blobs.len(), 3);
    assert_eq!(r.snapshots.len(), 3);
}

/// The same image (same config) stored again from another manifest (other compression):
/// the record follows the newest manifest and gc drops the old manifest's blobs.
#[test]
fn same_image_from_another_manifest() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Driver::Vfs);
    let layers = vec![LayerBuilder::new().file("f", 0o644, b"content").finish()];
    let plain = put_image(&store, &layers, false, &["a:1"]);
    let gz = put_image(&store, &layers, true, &["a:2"]);
    assert_eq!(plain.id, gz.id);
    let img = store.image("a:1").unwrap();
    assert_eq!(img.repo_tags.len(), 2);
    assert_eq!(img.manifest, gz.manifest);
    assert_eq!(
        img.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let r = store.gc().unwrap();
    let mut expect = vec![plain.manifest.clone(), plain.layers[0].blob.clone()];
    expect.sort();
    assert_eq!(r.blobs, expect);
    assert!(r.snapshots.is_empty());
    let mut out = Vec::new();
    store.save(&["a:1"], &mut out).unwrap();
}
