//! Pull and push against a real registry on 127.0.0.1 (see `common`).

mod common;

use std::fs;
use std::path::Path;
use std::time::Instant;

use common::*;
use skiff_image::{pull, push, Progress};
use skiff_registry::Platform;
use skiff_store::Store;

fn statuses(events: &[Progress]) -> Vec<String> {
    events
        .iter()
        .map(|p| match &p.id {
            Some(id) => format!("{id}: {}", p.status.clone().unwrap_or_default()),
            None => p.status.clone().unwrap_or_default(),
        })
        .collect()
}

fn count_status(events: &[Progress], status: &str) -> usize {
    events
        .iter()
        .filter(|p| p.status.as_deref() == Some(status))
        .count()
}

/// Checks the merged tree of an image pulled from `busybox_image`.
fn check_tree(store: &Store, image: &str, arch: &str) {
    let cid = format!("check-{}", std::process::id());
    store.create_rootfs(&cid, image).unwrap();
    let root = store.mount_rootfs(&cid).unwrap();
    let res = std::panic::catch_unwind(|| {
        let bb = fs::metadata(root.join("bin/busybox")).unwrap();
        assert_eq!(bb.len(), fs::metadata("/bin/busybox").unwrap().len());
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(
            fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "skiff\n"
        );
        assert_eq!(fs::read_to_string(root.join("etc/added")).unwrap(), arch);
        assert!(!root.join("etc/removeme").exists(), "whiteout not applied");
        assert!(!root.join("old/a").exists(), "opaque dir not applied");
        assert_eq!(fs::read_to_string(root.join("old/b")).unwrap(), "b");
        assert!(root.join("tmp").is_dir());
    });
    store.unmount_rootfs(&cid).unwrap();
    store.remove_rootfs(&cid).unwrap();
    res.unwrap();
}

#[test]
fn pull_twice_then_push_elsewhere_mounts_and_keeps_the_digest() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let client = client();
    let src = reg.reference("test/busybox:1");
    let img = busybox_image(GZIP, &host_arch());
    let pushed = push_image(&client, &src, &img);

    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let mut events = Vec::new();
    let t = Instant::now();
    let res = pull(&store, &client, &src, &Platform::host(), &mut |p| {
        events.push(p)
    })
    .unwrap();
    eprintln!(
        "first pull of a {}-byte image: {:?}",
        img.layers.iter().map(|l| l.bytes.len()).sum::<usize>(),
        t.elapsed()
    );
    let lines = statuses(&events);
    assert_eq!(
        events[0].to_json(),
        r#"{"status":"Pulling from test/busybox","id":"1"}"#
    );
    assert_eq!(count_status(&events, "Pulling fs layer"), 2, "{lines:#?}");
    assert_eq!(count_status(&events, "Pull complete"), 2, "{lines:#?}");
    assert!(lines.contains(&format!("Digest: {pushed}")), "{lines:#?}");
    assert_eq!(
        lines.last().unwrap(),
        &format!("Status: Downloaded newer image for {}", src.familiar())
    );
    for p in &events {
        if p.status.as_deref() == Some("Pulling fs layer") {
            assert_eq!(p.id.as_ref().unwrap().len(), 12);
            assert!(p.to_json().contains(r#""progressDetail":{}"#));
        }
    }
    assert_eq!(res.digest, pushed);
    assert_eq!(res.manifest, pushed);
    assert_eq!(res.layers_downloaded, 2);
    assert_eq!(res.image.id, img.config.digest);
    let listed = store.images();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].repo_tags, vec![src.clone()]);
    assert_eq!(
        listed[0].repo_digests[0].to_string(),
        format!("{}@{pushed}", src.name())
    );
    check_tree(&store, &src.to_string(), &host_arch());

    // Again: nothing but the manifest is fetched.
    let gets = reg.blob_gets();
    let mut again = Vec::new();
    let res2 = pull(&store, &client, &src, &Platform::host(), &mut |p| {
        again.push(p)
    })
    .unwrap();
    assert_eq!(res2.layers_downloaded, 0);
    assert!(res2.up_to_date);
    assert_eq!(
        count_status(&again, "Already exists"),
        2,
        "{:#?}",
        statuses(&again)
    );
    assert_eq!(count_status(&again, "Downloading"), 0);
    assert_eq!(
        statuses(&again).last().unwrap(),
        &format!("Status: Image is up to date for {}", src.familiar())
    );
    assert_eq!(reg.blob_gets(), gets, "the second pull fetched blobs");
    assert!(gets >= 3, "the access log counts blob GETs ({gets})");

    // Push to another repository of the same registry: layers are mounted, the manifest
    // is byte-identical.
    let dst = reg.reference("other/copy:2");
    let mut pev = Vec::new();
    let d = push(&store, &client, &dst, &src.to_string(), &mut |p| {
        pev.push(p)
    })
    .unwrap();
    let plines = statuses(&pev);
    assert_eq!(
        plines[0],
        format!("The push refers to repository [{}]", dst.name())
    );
    assert_eq!(
        count_status(&pev, "Mounted from test/busybox"),
        2,
        "{plines:#?}"
    );
    assert_eq!(d, pushed, "push changed the manifest digest");
    assert!(plines.contains(&format!(
        "2: digest: {d} size: {}",
        img.manifest.bytes.len()
    )));
    let aux = pev.iter().find_map(|p| p.aux.clone()).unwrap();
    assert_eq!(aux["Digest"], d.to_string());

    // Pushing again: every layer exists.
    let mut pev2 = Vec::new();
    push(&store, &client, &dst, &src.to_string(), &mut |p| {
        pev2.push(p)
    })
    .unwrap();
    assert_eq!(count_status(&pev2, "Layer already exists"), 2);

    // Round trip: a fresh store pulls the pushed copy with the same manifest digest.
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = common::store(dir2.path());
    let r = pull(&store2, &client, &dst, &Platform::host(), &mut |_| {}).unwrap();
    assert_eq!(r.manifest, pushed);
    assert_eq!(r.image.id, img.config.digest);
}

#[test]
fn an_imported_image_is_pushed_with_its_own_manifest_and_uploads() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let client = client();
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let data = tar(&[
        Entry::Dir("data/"),
        Entry::File("data/big", random_bytes(3 << 20, 7)),
    ]);
    let tag = reg.reference("imported/x:v1");
    let img = store
        .import(
            &data[..],
            skiff_store::Compression::None,
            &skiff_store::ImportOptions {
                tag: Some(tag.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    let mut ev = Vec::new();
    let opts = skiff_image::PushOptions {
        chunk_threshold: 1 << 20,
        chunk_size: 1 << 20,
        ..Default::default()
    };
    let d = skiff_image::push_with(&store, &client, &tag, &tag.to_string(), &opts, &mut |p| {
        ev.push(p)
    });
    let d = d.unwrap_or_else(|e| panic!("{e}: {:#?}", statuses(&ev)));
    assert_eq!(d, img.manifest);
    assert_eq!(count_status(&ev, "Pushed"), 1, "{:#?}", statuses(&ev));
    // and back
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = common::store(dir2.path());
    let r = pull(&store2, &client, &tag, &Platform::host(), &mut |_| {}).unwrap();
    assert_eq!(r.manifest, img.manifest);
    assert_eq!(r.image.id, img.id);
}

#[test]
fn zstd_layers_and_whiteouts() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let client = client();
    let r = reg.reference("test/zstd:latest");
    let img = busybox_image(ZSTD, &host_arch());
    push_image(&client, &r, &img);
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let res = pull(&store, &client, &r, &Platform::host(), &mut |_| {}).unwrap();
    assert_eq!(res.image.layers[1].media_type, ZSTD);
    check_tree(&store, &r.to_string(), &host_arch());
}

#[test]
fn multi_arch_index_pulls_the_host_platform() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let client = client();
    let r = reg.reference("test/multi:latest");
    let host = host_arch();
    let other = if host == "amd64" { "arm64" } else { "amd64" };
    let mine = busybox_image(GZIP, &host);
    let theirs = busybox_image(GZIP, other);
    let by_digest = |d: &skiff_reference::Digest| reg.reference(&format!("test/multi@{d}"));
    push_image(&client, &by_digest(&mine.manifest.digest), &mine);
    push_image(&client, &by_digest(&theirs.manifest.digest), &theirs);
    // An attestation manifest, as BuildKit adds.
    let att_layer = Blob::new(b"{}".to_vec(), "application/vnd.in-toto+json");
    let att_config = Blob::new(b"{}".to_vec(), OCI_CONFIG);
    let att = Blob::new(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": att_config.descriptor(), "layers": [att_layer.descriptor()],
        }))
        .unwrap(),
        OCI_MANIFEST,
    );
    for b in [&att_layer, &att_config] {
        client
            .push_blob(
                &r,
                &b.digest,
                b.bytes.len() as u64,
                &mut &b.bytes[..],
                skiff_registry::UploadMode::Monolithic,
            )
            .unwrap();
    }
    client
        .put_manifest(&by_digest(&att.digest), OCI_MANIFEST, &att.bytes)
        .unwrap();
    let mut d_other = theirs.manifest.descriptor();
    d_other["platform"] = serde_json::json!({"os": "linux", "architecture": other});
    let mut d_mine = mine.manifest.descriptor();
    d_mine["platform"] = serde_json::json!({"os": "linux", "architecture": host});
    let mut d_att = att.descriptor();
    d_att["platform"] = serde_json::json!({"os": "unknown", "architecture": "unknown"});
    d_att["annotations"] = serde_json::json!({
        "vnd.docker.reference.type": "attestation-manifest",
        "vnd.docker.reference.digest": mine.manifest.digest.to_string(),
    });
    let index = Blob::new(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [d_other, d_mine, d_att],
        }))
        .unwrap(),
        OCI_INDEX,
    );
    let index_digest = client.put_manifest(&r, OCI_INDEX, &index.bytes).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let res = pull(&store, &client, &r, &Platform::host(), &mut |_| {}).unwrap();
    assert_eq!(res.digest, index_digest);
    assert_eq!(res.manifest, mine.manifest.digest);
    assert_eq!(res.image.id, mine.config.digest);
    assert_eq!(res.platform.as_ref().unwrap().architecture, host);
    assert_eq!(
        res.image.repo_digests[0].to_string(),
        format!("{}@{index_digest}", r.name())
    );
    check_tree(&store, &r.to_string(), &host);
    // gc keeps the index the repo digest names.
    store.gc().unwrap();
    assert!(store.has_blob(&index_digest), "gc removed the pulled index");

    // The other platform, explicitly.
    let p = Platform::new("linux", other, None);
    let res = pull(&store, &client, &r, &p, &mut |_| {}).unwrap();
    assert_eq!(res.image.id, theirs.config.digest);
}

#[test]
fn a_corrupt_layer_fails_with_a_digest_error_and_leaves_nothing() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let client = client();
    let r = reg.reference("test/corrupt:latest");
    let img = busybox_image(GZIP, &host_arch());
    push_image(&client, &r, &img);
    // Same size, other bytes: the registry serves them as the blob.
    let f = reg.blob_file(&img.layers[0].digest);
    let len = fs::read(&f).unwrap().len();
    fs::write(&f, random_bytes(len, 99)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let mut events = Vec::new();
    let err = pull(&store, &client, &r, &Platform::host(), &mut |p| {
        events.push(p)
    })
    .unwrap_err();
    let msg = format!("{err}");
    eprintln!("corrupt layer: {msg}");
    assert!(msg.contains("digest"), "{msg}");
    assert!(msg.contains(&img.layers[0].digest.to_string()), "{msg}");
    assert!(
        matches!(
            err.registry_error(),
            Some(skiff_registry::Error::DigestMismatch { .. })
        ),
        "{err:?}"
    );
    assert!(store.images().is_empty());
    assert!(store.image(&r.to_string()).is_err());
    store.gc().unwrap();
    for d in [
        "content/blobs/sha256",
        "content/tmp",
        "snapshots/tmp",
        "tmp",
        "l",
    ] {
        assert_eq!(count(&dir.path().join(d)), 0, "{d} not clean");
    }
    // only tmp/ left in snapshots
    assert_eq!(count(&dir.path().join("snapshots")), 1);
}

#[test]
fn a_cancelled_pull_records_nothing() {
    if !have_registry() {
        return;
    }
    let reg = Registry::start();
    let client = client();
    let r = reg.reference("test/cancel:latest");
    let layers = ["a", "b", "c", "d"]
        .iter()
        .zip(10u64..)
        .map(|(f, seed)| (tar(&[Entry::File(f, random_bytes(8 << 20, seed))]), GZIP))
        .collect();
    let img = image(layers, &host_arch());
    push_image(&client, &r, &img);
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opts = skiff_image::PullOptions {
        max_concurrent_downloads: 2,
        cancel: Some(cancel.clone()),
    };
    let mut events = Vec::new();
    let err = skiff_image::pull_with(&store, &client, &r, &Platform::host(), &opts, &mut |p| {
        if p.status.as_deref() == Some("Downloading") {
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        events.push(p);
    })
    .unwrap_err();
    assert!(matches!(err, skiff_image::Error::Cancelled), "{err:?}");
    assert!(store.images().is_empty());
    assert_eq!(count_status(&events, "Pull complete"), 0);
    store.gc().unwrap();
    assert_eq!(count(&dir.path().join("content/blobs/sha256")), 0);
    assert_eq!(count(&dir.path().join("content/tmp")), 0);
}

#[test]
fn docker_schema2_with_a_foreign_layer() {
    if !have_registry() {
        return;
    }
    const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    const FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    let reg = Registry::start();
    let client = client();
    let base = busybox_image(GZIP, &host_arch());
    // The foreign layer lives elsewhere: here, in another repository, fetched by URL.
    let elsewhere = reg.reference("test/elsewhere:x");
    let foreign = &base.layers[1];
    client
        .push_blob(
            &elsewhere,
            &foreign.digest,
            foreign.bytes.len() as u64,
            &mut &foreign.bytes[..],
            skiff_registry::UploadMode::Monolithic,
        )
        .unwrap();
    let url = format!(
        "http://{}/v2/test/elsewhere/blobs/{}",
        reg.host(),
        foreign.digest
    );
    let config = Blob::new(
        base.config.bytes.clone(),
        "application/vnd.docker.container.image.v1+json",
    );
    let l0 = Blob::new(base.layers[0].bytes.clone(), DOCKER_LAYER);
    let mut d1 = Blob::new(foreign.bytes.clone(), FOREIGN).descriptor();
    d1["urls"] = serde_json::json!([url]);
    let manifest = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": config.descriptor(),
        "layers": [l0.descriptor(), d1],
    }))
    .unwrap();
    let r = reg.reference("test/foreign:latest");
    for b in [&l0, &config] {
        client
            .push_blob(
                &r,
                &b.digest,
                b.bytes.len() as u64,
                &mut &b.bytes[..],
                skiff_registry::UploadMode::Monolithic,
            )
            .unwrap();
    }
    let digest = client.put_manifest(&r, DOCKER_MANIFEST, &manifest).unwrap();
    assert!(!client.blob_exists(&r, &foreign.digest).unwrap());

    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let res = pull(&store, &client, &r, &Platform::host(), &mut |_| {}).unwrap();
    assert_eq!(res.manifest, digest);
    assert_eq!(res.image.layers[1].media_type, FOREIGN);
    check_tree(&store, &r.to_string(), &host_arch());

    // Pushed elsewhere: the foreign layer is skipped (Docker's behaviour), the manifest
    // and its digest are unchanged.
    let dst = reg.reference("test/foreign-copy:latest");
    let mut ev = Vec::new();
    let d = push(&store, &client, &dst, &r.to_string(), &mut |p| ev.push(p)).unwrap();
    assert_eq!(d, digest);
    assert_eq!(
        count_status(&ev, "Skipped foreign layer"),
        1,
        "{:#?}",
        statuses(&ev)
    );
    assert!(!client.blob_exists(&dst, &foreign.digest).unwrap());
}
