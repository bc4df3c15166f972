//! save/load: round trips, old and new Docker archives, OCI archives, hostile archives.

mod common;

use std::fs;
use std::io::Read;
use std::path::Path;

use common::*;
use skiff_store::{Driver, Error, ErrorKind, Reference, Store};

/// Re-packs a tar, dropping members for which `keep` is false and renaming others.
fn repack(tar: &[u8], mut f: impl FnMut(&str) -> Option<String>) -> Vec<u8> {
    let mut ar = tar::Archive::new(tar);
    let mut b = tar::Builder::new(Vec::new());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let Some(new) = f(&name) else { continue };
        let mut h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        b.append_data(&mut h, new, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// Tar of a directory's regular files (for a layout on disk).
fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

fn vfs_tree(store: &Store, image: &str, id: &str) -> std::collections::BTreeMap<String, String> {
    let h = store.create_rootfs(id, image).unwrap();
    let t = tree(&h.path);
    store.remove_rootfs(id).unwrap();
    t
}

#[test]
fn save_load_round_trip() {
    require_root!();
    let d1 = tempfile::tempdir().unwrap();
    let s1 = open(d1.path(), Driver::Vfs);
    let img = put_image(&s1, &test_layers(), true, &["test/img:1", "test/img:2"]);
    let other = put_image(&s1, &test_layers()[..1], false, &["base"]);
    let mut archive = Vec::new();
    s1.save(&["test/img:1", "base", img.short_id()], &mut archive)
        .unwrap();
    let original = vfs_tree(&s1, "test/img:1", "a");

    // It is a Docker archive and an OCI layout.
    let names: Vec<String> = tar::Archive::new(&archive[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    for n in ["manifest.json", "index.json", "oci-layout", "repositories"] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    assert!(names.contains(&format!("blobs/sha256/{}", img.id.hex())));
    assert!(names.contains(&format!("blobs/sha256/{}", img.layers[0].diff_id.hex())));

    // Plain and gzip'd.
    for (i, data) in [archive.clone(), gzip(&archive)].into_iter().enumerate() {
        let d2 = tempfile::tempdir().unwrap();
        let s2 = open(d2.path(), Driver::Vfs);
        let loaded = s2.load(&data[..]).unwrap();
        assert_eq!(loaded.len(), 2, "round {i}");
        let l = s2.image("test/img:1").unwrap();
        assert_eq!(l.id, img.id);
        // Only the tag that was named travels.
        assert_eq!(l.repo_tags, vec![Reference::parse("test/img:1").unwrap()]);
        assert_eq!(s2.image("base").unwrap().id, other.id);
        assert_eq!(vfs_tree(&s2, "test/img:1", "b"), original);
        // Loading again changes nothing and is fine.
        s2.load(&data[..]).unwrap();
        assert_eq!(s2.images().len(), 2);
    }

    // The OCI half alone (index.json with annotations) loads too.
    let oci = repack(&archive, |n| {
        (n != "manifest.json" && n != "repositories").then(|| n.to_owned())
    });
    let d3 = tempfile::tempdir().unwrap();
    let s3 = open(d3.path(), Driver::Vfs);
    s3.load(&oci[..]).unwrap();
    assert_eq!(s3.image("test/img:1").unwrap().id, img.id);
    assert_eq!(s3.image("base").unwrap().id, other.id);
    assert_eq!(vfs_tree(&s3, "test/img:1", "c"), original);
}

/// Writes a docker-archive as Docker < 25 did: `<id>/layer.tar` dirs, `<config hex>.json`.
/// With `symlinked`, the layers are `<hex>.tar` files and `<id>/layer.tar` symlinks to them
/// (as skopeo and Docker write shared layers), and manifest.json names the symlinks.
fn old_docker_archive(layers: &[Vec<u8>], compress_layers: bool, tag: &str) -> (Vec<u8>, String) {
    docker_archive(layers, compress_layers, false, tag)
}

fn docker_archive(
    layers: &[Vec<u8>],
    compress_layers: bool,
    symlinked: bool,
    tag: &str,
) -> (Vec<u8>, String) {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "container_config": {"Cmd": ["old", "docker", "field"]},
        "docker_version": "20.10.24",
    }))
    .unwrap();
    let config_hex = sha256_hex(&config);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut layer_names = Vec::new();
    let mut links = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let id = sha256_hex(format!("v1 layer {i}").as_bytes());
        add(&format!("{id}/VERSION"), b"1.0");
        add(
            &format!("{id}/json"),
            format!("{{\"id\":\"{id}\"}}").as_bytes(),
        );
        let data = if compress_layers { gzip(l) } else { l.clone() };
        if symlinked {
            let file = format!("{}.tar", sha256_hex(&data));
            add(&file, &data);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            h.set_uid(0);
            h.set_gid(0);
            links.push((format!("{id}/layer.tar"), format!("../{file}"), h));
        } else {
            add(&format!("{id}/layer.tar"), &data);
        }
        layer_names.push(format!("{id}/layer.tar"));
    }
    for (name, target, mut h) in links {
        b.append_link(&mut h, name, target).unwrap();
    }
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&format!("{config_hex}.json"), &config);
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"), "RepoTags": [tag], "Layers": layer_names,
    }]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    add("repositories", b"{}");
    (b.into_inner().unwrap(), config_hex)
}

#[test]
fn load_old_style_docker_archives() {
    require_root!();
    let layers = test_layers();
    for (compress, symlinked) in [(false, false), (true, false), (true, true), (false, true)] {
        let (archive, config_hex) = docker_archive(&layers, compress, symlinked, "old/style:v1");
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path(), Driver::Vfs);
        let loaded = s.load(&gzip(&archive)[..]).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].id.hex(), config_hex);
        let img = s.image("old/style:v1").unwrap();
        assert_eq!(img.layers.len(), 3);
        let expect = if compress {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        } else {
            "application/vnd.oci.image.layer.v1.tar"
        };
        assert_eq!(img.layers[0].media_type, expect);
        // The raw config is kept byte for byte (fields oci-spec does not know included).
        assert_eq!(
            sha256_hex(&s.raw_config("old/style:v1").unwrap()),
            config_hex
        );
        check_merged(&vfs_tree(&s, "old/style:v1", "x"));
    }
}

#[test]
fn load_fixture_archives_when_present() {
    require_root!();
    let root = Path::new("/var/tmp/oci-fixtures/images");
    let expected = root.join("expected/multilayer.tree.json");
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    if let Ok(rd) = fs::read_dir(root.join("archive")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("multilayer") {
                inputs.push((e.path().display().to_string(), fs::read(e.path()).unwrap()));
            }
        }
    }
    if root.join("oci/multilayer/index.json").is_file() {
        inputs.push((
            "oci/multilayer layout".into(),
            tar_dir(&root.join("oci/multilayer")),
        ));
    }
    if inputs.is_empty() || !expected.is_file() {
        eprintln!("skipped: no fixture images under {}", root.display());
        return;
    }
    let want: serde_json::Value = serde_json::from_slice(&fs::read(&expected).unwrap()).unwrap();
    for (name, data) in inputs {
        let d = tempfile::tempdir().unwrap();
        let s = open(d.path(), Driver::Vfs);
        let loaded = s.load(&data[..]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let h = s.create_rootfs("f", &loaded[0].id.to_string()).unwrap();
        let t = tree(&h.path);
        for entry in want["entries"].as_array().unwrap() {
            let path = entry["path"].as_str().unwrap();
            let got = t
                .get(path)
                .unwrap_or_else(|| panic!("{name}: {path} missing"));
            let mode = entry["mode"].as_str().unwrap();
            let kind = entry["type"].as_str().unwrap();
            assert!(
                got.starts_with(&format!("{kind} {mode} {}:{}", entry["uid"], entry["gid"])),
                "{name}: {path}: {got} vs {entry}"
            );
            if let Some(sha) = entry["sha256"].as_str() {
                assert!(got.contains(sha), "{name}: {path}: content differs");
            }
        }
        assert_eq!(
            t.len(),
            want["entries"].as_array().unwrap().len(),
            "{name}: entry count"
        );
        s.remove_rootfs("f").unwrap();
        eprintln!("{name}: ok");
    }
}

fn assert_refused(archive: &[u8], what: &str) {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), Driver::Vfs);
    put_image(
        &s,
        &[LayerBuilder::new().file("pre", 0o644, b"existing").finish()],
        true,
        &["pre"],
    );
    let before = store_listing(&s);
    let err = s.load(archive).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
    eprintln!("{what}: {err}");
    assert_eq!(store_listing(&s), before, "{what}: the store changed");
    assert_eq!(s.images().len(), 1);
    assert_eq!(
        fs::read_dir(d.path().join("tmp")).unwrap().count(),
        0,
        "{what}: temp left"
    );
}

#[test]
fn hostile_archives_are_refused_and_change_nothing() {
    require_root!();
    let layers = test_layers();
    let (good, config_hex) = old_docker_archive(&layers, true, "x:1");

    // A `..` member name (written raw: the tar crate refuses to build one).
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.as_gnu_mut().unwrap().name[..12].copy_from_slice(b"../../escape");
    h.set_cksum();
    evil.append(&h, &b"evil"[..]).unwrap();
    let evil = evil.into_inner().unwrap();
    let mut cat = evil[..evil.len() - 1024].to_vec();
    cat.extend_from_slice(&good);
    assert_refused(&cat, "dot-dot member");

    // manifest.json pointing outside the archive.
    let bad = repack(&good, |n| Some(n.to_owned()));
    let bad = {
        let mut ar = tar::Archive::new(&bad[..]);
        let mut b = tar::Builder::new(Vec::new());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            if name == "manifest.json" {
                data = serde_json::to_vec(&serde_json::json!([{
                    "Config": "../../../etc/passwd", "RepoTags": ["x:1"], "Layers": []}]))
                .unwrap();
            }
            let mut h = e.header().clone();
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    };
    assert_refused(&bad, "manifest path escape");

    // A symlinked blob.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, format!("{config_hex}.json"), "/etc/passwd")
        .unwrap();
    let sym = b.into_inner().unwrap();
    let mut cat = sym[..sym.len() - 1024].to_vec();
    cat.extend_from_slice(&repack(&good, |n| {
        (n != format!("{config_hex}.json")).then(|| n.to_owned())
    }));
    assert_refused(&cat, "symlinked config blob");
    // A layer symlink climbing out of the archive.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "abc/layer.tar", "../../../../etc/shadow")
        .unwrap();
    let sym = b.into_inner().unwrap();
    let mut cat = sym[..sym.len() - 1024].to_vec();
    cat.extend_from_slice(&good);
    assert_refused(&cat, "layer symlink escaping");

    // A config whose digest is not its name.
    let renamed = repack(&good, |n| {
        Some(if n == format!("{config_hex}.json") {
            format!("{}.json", "b".repeat(64))
        } else {
            n.to_owned()
        })
    });
    let renamed = {
        let mut ar = tar::Archive::new(&renamed[..]);
        let mut b = tar::Builder::new(Vec::new());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            if name == "manifest.json" {
                data = String::from_utf8(data)
                    .unwrap()
                    .replace(&config_hex, &"b".repeat(64))
                    .into_bytes();
            }
            let mut h = e.header().clone();
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    };
    assert_refused(&renamed, "config digest mismatch");

    // A gzip'd layer whose content is not its diffID: found while unpacking, after other
    // layers were already stored; they must be rolled back.
    let mut wrong = layers.clone();
    wrong[2] = LayerBuilder::new().file("other", 0o644, b"other").finish();
    let (tampered, _) = {
        // Config lists the real diffIDs, the archive carries another third layer.
        let (a, h) = old_docker_archive(&layers, true, "x:1");
        let (b_, _) = old_docker_archive(&wrong, true, "x:1");
        let third = |ar: &[u8]| -> (String, Vec<u8>) {
            let mut ar = tar::Archive::new(ar);
            let mut names = Vec::new();
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let n = e.path().unwrap().display().to_string();
                if n.ends_with("layer.tar") {
                    let mut d = Vec::new();
                    e.read_to_end(&mut d).unwrap();
                    names.push((n, d));
                }
            }
            names.remove(2)
        };
        let (name3, data3) = third(&b_);
        let replaced = {
            let mut ar = tar::Archive::new(&a[..]);
            let mut out = tar::Builder::new(Vec::new());
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let n = e.path().unwrap().display().to_string();
                let mut d = Vec::new();
                e.read_to_end(&mut d).unwrap();
                if n == name3 {
                    d = data3.clone();
                }
                let mut h = e.header().clone();
                h.set_size(d.len() as u64);
                out.append_data(&mut h, n, &d[..]).unwrap();
            }
            out.into_inner().unwrap()
        };
        (replaced, h)
    };
    assert_refused(&tampered, "wrong layer diffID");

    // An OCI archive whose layer blob does not match its name.
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), Driver::Vfs);
    put_image(&s, &layers[..1], true, &["o:1"]);
    let mut saved = Vec::new();
    s.save(&["o:1"], &mut saved).unwrap();
    let diff_hex = sha256_hex(&layers[0]);
    let corrupt = {
        let mut ar = tar::Archive::new(&saved[..]);
        let mut out = tar::Builder::new(Vec::new());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let n = e.path().unwrap().display().to_string();
            if n == "manifest.json" {
                continue;
            }
            let mut d = Vec::new();
            e.read_to_end(&mut d).unwrap();
            if n.ends_with(&diff_hex) {
                let last = d.len() - 1;
                d[last] ^= 1;
            }
            let mut h = e.header().clone();
            out.append_data(&mut h, n, &d[..]).unwrap();
        }
        out.into_inner().unwrap()
    };
    assert_refused(&corrupt, "OCI blob digest mismatch");

    // Not an archive at all.
    assert_refused(b"this is not a tar", "garbage");
}

#[test]
fn load_errors_are_typed() {
    require_root!();
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), Driver::Vfs);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    b.append_data(&mut h, "hello", &b"hi"[..]).unwrap();
    let err = s.load(&b.into_inner().unwrap()[..]).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(err.to_string().contains("manifest.json"), "{err}");
}
