//! `docker save` / `docker load`: Docker archives (old and Docker ≥ 25 style, which is also an
//! OCI layout) and OCI archives.
//!
//! Loading extracts the archive into a temp dir under the store first, accepting only
//! regular files and directories with clean relative names (no `..`, no absolute paths, no
//! symlinks or hard links), then verifies every digest before anything enters the store.
//! Layer diffIDs are verified while unpacking; if anything fails, the blobs and snapshots
//! the load added are removed again and no image record is written.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_reference::{Algorithm, Digest, Reference};
use skiff_unpack::Compression;

use crate::error::{io_err, Error, Result};
use crate::fsutil::{digest_reader, sha256};
use crate::image::{json_err, layer_compression, Image, MiniConfig};
use crate::snapshot::chain_ids;
use crate::tarball::host_arch;
use crate::Store;

const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const DOCKER_MT_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// One entry of a Docker archive's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

/// Cleans an archive member name: relative, no `..`; `None` if it must be refused.
fn clean_name(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        return None;
    }
    let mut out = PathBuf::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => out.push(c),
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// An archive extracted to a temp dir; its (in-archive) symlinks and hard links are kept
/// as aliases from name to target name, never created on disk.
struct Extracted<'a> {
    dir: &'a Path,
    aliases: HashMap<PathBuf, PathBuf>,
}

fn member(ar: &Extracted<'_>, name: &str) -> Result<PathBuf> {
    let mut rel = clean_name(name).ok_or_else(|| {
        invalid(format!(
            "the archive refers to {name:?}, a path outside the archive"
        ))
    })?;
    for _ in 0..16 {
        match ar.aliases.get(&rel) {
            Some(t) => rel = t.clone(),
            None => return Ok(ar.dir.join(rel)),
        }
    }
    Err(invalid(format!(
        "archive member {name:?} is a loop of links"
    )))
}

/// Where a symlink at `link` (a clean relative name) pointing to `target` leads, as a clean
/// name inside the archive; `None` if it leaves the archive.
fn link_target(link: &Path, target: &str) -> Option<PathBuf> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<String> = link
        .parent()
        .map(|p| p.iter().map(|c| c.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c.to_owned()),
        }
    }
    (!parts.is_empty()).then(|| parts.iter().collect())
}

fn open_member(ar: &Extracted<'_>, name: &str) -> Result<File> {
    let p = member(ar, name)?;
    File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&p)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => invalid(format!("the archive has no member {name:?}")),
            _ => io_err("opening archive member", &p)(e),
        })
}

fn read_member(ar: &Extracted<'_>, name: &str) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    open_member(ar, name)?
        .read_to_end(&mut v)
        .map_err(io_err("reading archive member", ar.dir.join(name)))?;
    Ok(v)
}

/// Extracts the archive into `dir`, refusing anything but clean regular files and dirs, and
/// symlinks and hard links to other members (returned as aliases, not created).
fn extract(reader: impl Read, dir: &Path) -> Result<HashMap<PathBuf, PathBuf>> {
    let mut aliases = HashMap::new();
    let plain = skiff_unpack::decompressor(reader, Compression::Detect).map_err(|source| {
        Error::Unpack {
            layer: "image archive".into(),
            source,
        }
    })?;
    let mut ar = tar::Archive::new(plain);
    let rerr = |e| invalid(format!("the image archive is not a valid tar stream: {e}"));
    for entry in ar.entries().map_err(rerr)? {
        let mut entry = entry.map_err(rerr)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            continue;
        }
        if kind == tar::EntryType::Directory && name.split('/').all(|c| c.is_empty() || c == ".") {
            continue; // the archive's top directory (`./`)
        }
        let rel = clean_name(&name).ok_or_else(|| {
            invalid(format!(
                "archive member {name:?} has an absolute path or a `..` component; refusing the archive"
            ))
        })?;
        let dest = dir.join(&rel);
        match kind {
            tar::EntryType::Directory => {
                fs::create_dir_all(&dest).map_err(io_err("creating", &dest))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(p) = dest.parent() {
                    fs::create_dir_all(p).map_err(io_err("creating", p))?;
                }
                let mut f = File::options()
                    .write(true)
                    .create_new(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&dest)
                    .map_err(|e| match e.kind() {
                        io::ErrorKind::AlreadyExists => {
                            invalid(format!("archive member {name:?} appears twice"))
                        }
                        _ => io_err("creating", &dest)(e),
                    })?;
                io::copy(&mut entry, &mut f).map_err(io_err("extracting", &dest))?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let raw = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let target = if kind == tar::EntryType::Symlink {
                    link_target(&rel, &raw)
                } else {
                    clean_name(&raw)
                };
                let Some(target) = target else {
                    return Err(invalid(format!(
                        "archive member {name:?} is a link to {raw:?}, outside the archive; refusing the archive"
                    )));
                };
                if aliases.insert(rel, target).is_some() {
                    return Err(invalid(format!("archive member {name:?} appears twice")));
                }
            }
            other => {
                return Err(invalid(format!(
                    "archive member {name:?} is a {other:?} entry; an image archive may hold only files, directories and links between them"
                )))
            }
        }
    }
    Ok(aliases)
}

/// A layer ready to be stored.
struct PlannedLayer {
    path: PathBuf,
    blob: Digest,
    size: u64,
    media_type: String,
    diff_id: Digest,
}

/// An image ready to be stored.
struct Planned {
    config_path: PathBuf,
    config: Digest,
    /// The manifest as found (OCI archive) or `None` (Docker archive: made up).
    manifest: Option<(PathBuf, Digest)>,
    layers: Vec<PlannedLayer>,
    tags: Vec<Reference>,
}

fn layer_media_type(path: &Path) -> Result<&'static str> {
    let mut head = [0u8; 4];
    let mut f = File::open(path).map_err(io_err("opening", path))?;
    let n = f.read(&mut head).map_err(io_err("reading", path))?;
    Ok(if head[..n].starts_with(&[0x1f, 0x8b]) {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else if head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        MT_LAYER
    })
}

/// The hex a member name promises (`blobs/sha256/<hex>`, `<hex>.json`), if any.
fn named_digest(name: &str) -> Option<Digest> {
    let clean = clean_name(name)?;
    let s = clean.to_str()?;
    if let Some(rest) = s.strip_prefix("blobs/") {
        let (alg, hex) = rest.split_once('/')?;
        return Digest::parse(&format!("{alg}:{hex}")).ok();
    }
    let hex = s.strip_suffix(".json")?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

fn file_digest(path: &Path, alg: Algorithm) -> Result<(Digest, u64)> {
    let f = File::open(path).map_err(io_err("opening", path))?;
    digest_reader(alg, f).map_err(io_err("reading", path))
}

fn parse_tag(s: &str) -> Result<Reference> {
    Reference::parse(s).map_err(|source| Error::InvalidReference {
        input: s.to_owned(),
        source,
    })
}

fn plan_docker(ar: &Extracted<'_>) -> Result<Vec<Planned>> {
    let entries: Vec<DockerEntry> = serde_json::from_slice(&read_member(ar, "manifest.json")?)
        .map_err(json_err("the archive's manifest.json"))?;
    let mut hashed: HashMap<PathBuf, (Digest, u64)> = HashMap::new();
    let mut out = Vec::new();
    for e in entries {
        let raw = read_member(ar, &e.config)?;
        let config = sha256(&raw);
        if let Some(named) = named_digest(&e.config) {
            if named != config {
                return Err(Error::DigestMismatch {
                    what: format!("archive member {}", e.config),
                    expected: named.to_string(),
                    actual: config.to_string(),
                });
            }
        }
        let mini: MiniConfig = serde_json::from_slice(&raw)
            .map_err(json_err(format!("the archive's config {}", e.config)))?;
        if mini.rootfs.diff_ids.len() != e.layers.len() {
            return Err(invalid(format!(
                "the archive lists {} layers for config {} but the config has {} diffIDs",
                e.layers.len(),
                e.config,
                mini.rootfs.diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (name, diff_id) in e.layers.iter().zip(mini.rootfs.diff_ids) {
            let path = member(ar, name)?;
            open_member(ar, name)?;
            let (blob, size) = match hashed.get(&path) {
                Some(x) => x.clone(),
                None => {
                    let x = file_digest(&path, Algorithm::Sha256)?;
                    hashed.insert(path.clone(), x.clone());
                    x
                }
            };
            if let Some(named) = named_digest(name) {
                if named != blob {
                    return Err(Error::DigestMismatch {
                        what: format!("archive member {name}"),
                        expected: named.to_string(),
                        actual: blob.to_string(),
                    });
                }
            }
            let media_type = layer_media_type(&path)?;
            if media_type == MT_LAYER && blob != diff_id {
                return Err(Error::DigestMismatch {
                    what: format!("uncompressed layer {name} (its config diffID)"),
                    expected: diff_id.to_string(),
                    actual: blob.to_string(),
                });
            }
            layers.push(PlannedLayer {
                path,
                blob,
                size,
                media_type: media_type.to_owned(),
                diff_id,
            });
        }
        let tags = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| parse_tag(t))
            .collect::<Result<_>>()?;
        out.push(Planned {
            config_path: member(ar, &e.config)?,
            config,
            manifest: None,
            layers,
            tags,
        });
    }
    Ok(out)
}

/// Reads and verifies a blob of an OCI layout.
fn layout_blob(ar: &Extracted<'_>, d: &oci_spec::image::Descriptor) -> Result<(PathBuf, Digest)> {
    let digest = Digest::parse(d.digest().as_ref()).map_err(|source| Error::InvalidDigest {
        input: d.digest().to_string(),
        source,
    })?;
    let name = format!("blobs/{}/{}", digest.algorithm(), digest.hex());
    let path = member(ar, &name)?;
    open_member(ar, &name)?;
    let (actual, size) = file_digest(&path, digest.algorithm())?;
    if actual != digest {
        return Err(Error::DigestMismatch {
            what: format!("archive member {name}"),
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    if size != d.size() {
        return Err(invalid(format!(
            "archive member {name} has {size} bytes, its descriptor says {}",
            d.size()
        )));
    }
    Ok((path, digest))
}

fn tags_from(annotations: Option<&HashMap<String, String>>) -> Vec<Reference> {
    let Some(a) = annotations else {
        return Vec::new();
    };
    let name = a.get(ANNOTATION_IMAGE_NAME).or_else(|| {
        a.get(ANNOTATION_REF_NAME)
            .filter(|r| r.contains([':', '/']))
    });
    match name.map(|n| Reference::parse(n)) {
        Some(Ok(r)) if r.tag().is_some() && r.digest().is_none() => vec![r],
        Some(_) => {
            tracing::debug!(?a, "ignoring an image name annotation that is not a tag");
            Vec::new()
        }
        None => Vec::new(),
    }
}

fn plan_oci_manifest(
    ar: &Extracted<'_>,
    desc: &oci_spec::image::Descriptor,
    tags: Vec<Reference>,
    out: &mut Vec<Planned>,
) -> Result<()> {
    let mt = desc.media_type().to_string();
    if mt == MT_INDEX || mt == DOCKER_MT_LIST {
        let (path, _) = layout_blob(ar, desc)?;
        let idx = ImageIndex::from_file(&path)
            .map_err(|e| invalid(format!("index {} is not valid: {e}", desc.digest())))?;
        let wanted = |d: &&oci_spec::image::Descriptor| match d.platform() {
            None => true,
            Some(p) => p.os().to_string() == "linux" && p.architecture().to_string() == host_arch(),
        };
        let pick: Vec<_> = idx.manifests().iter().filter(wanted).collect();
        let Some(first) = pick.first() else {
            return Err(invalid(format!(
                "index {} has no manifest for linux/{}",
                desc.digest(),
                host_arch()
            )));
        };
        return plan_oci_manifest(ar, first, tags, out);
    }
    let (mpath, mdigest) = layout_blob(ar, desc)?;
    let m = ImageManifest::from_file(&mpath)
        .map_err(|e| invalid(format!("manifest {mdigest} is not valid: {e}")))?;
    let (config_path, config) = layout_blob(ar, m.config())?;
    let mini: MiniConfig =
        serde_json::from_slice(&fs::read(&config_path).map_err(io_err("reading", &config_path))?)
            .map_err(json_err(format!("the config {config}")))?;
    if mini.rootfs.diff_ids.len() != m.layers().len() {
        return Err(invalid(format!(
            "manifest {mdigest} has {} layers but its config has {} diffIDs",
            m.layers().len(),
            mini.rootfs.diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    for (d, diff_id) in m.layers().iter().zip(mini.rootfs.diff_ids) {
        let (path, blob) = layout_blob(ar, d)?;
        layers.push(PlannedLayer {
            path,
            blob,
            size: d.size(),
            media_type: d.media_type().to_string(),
            diff_id,
        });
    }
    out.push(Planned {
        config_path,
        config,
        manifest: Some((mpath, mdigest)),
        layers,
        tags,
    });
    Ok(())
}

fn plan_oci(ar: &Extracted<'_>) -> Result<Vec<Planned>> {
    let raw = read_member(ar, "index.json")?;
    let idx = ImageIndex::from_reader(&raw[..])
        .map_err(|e| invalid(format!("the archive's index.json is not valid: {e}")))?;
    let mut out = Vec::new();
    for d in idx.manifests() {
        plan_oci_manifest(ar, d, tags_from(d.annotations().as_ref()), &mut out)?;
    }
    // Several index entries (one per tag) may name the same manifest: merge them.
    let mut merged: Vec<Planned> = Vec::new();
    for p in out {
        match merged.iter_mut().find(|m| m.config == p.config) {
            Some(m) => m.tags.extend(p.tags),
            None => merged.push(p),
        }
    }
    Ok(merged)
}

/// Content added by a load, removed again if the load fails.
#[derive(Default)]
struct Added {
    blobs: Vec<Digest>,
    snapshots: Vec<Digest>,
}

/// Streams exactly `size` bytes of `inner` or fails.
struct Exact<R> {
    inner: R,
    left: u64,
    what: String,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!(
                    "{} is longer than recorded",
                    self.what
                ))),
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} is shorter than recorded", self.what),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn tar_add(b: &mut tar::Builder<impl Write>, path: &str, size: u64, data: impl Read) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data)
        .map_err(io_err("writing the archive member", path))
}

impl Store {
    fn store_planned(
        &self,
        p: &Planned,
        added: &mut Added,
        lease: &crate::Lease,
    ) -> Result<(Image, Vec<Reference>)> {
        let mut put = |path: &Path, d: &Digest| -> Result<()> {
            lease.protect_blob(d);
            if self.has_blob(d) {
                return Ok(());
            }
            let f = File::open(path).map_err(io_err("opening", path))?;
            self.put_blob(d, f)?;
            added.blobs.push(d.clone());
            Ok(())
        };
        put(&p.config_path, &p.config)?;
        for l in &p.layers {
            put(&l.path, &l.blob)?;
        }
        let manifest = match &p.manifest {
            Some((path, d)) => {
                put(path, d)?;
                d.clone()
            }
            None => {
                let config_size = self.blob_size(&p.config)?;
                let m = json!({
                    "schemaVersion": 2,
                    "mediaType": MT_MANIFEST,
                    "config": {"mediaType": MT_CONFIG, "digest": p.config.to_string(), "size": config_size},
                    "layers": p.layers.iter().map(|l| json!({
                        "mediaType": l.media_type, "digest": l.blob.to_string(), "size": l.size,
                    })).collect::<Vec<_>>(),
                });
                let raw = serde_json::to_vec(&m).map_err(json_err("a manifest"))?;
                let d = sha256(&raw);
                lease.protect_blob(&d);
                if !self.has_blob(&d) {
                    self.put_blob(&d, &raw[..])?;
                    added.blobs.push(d.clone());
                }
                d
            }
        };
        let diff_ids: Vec<Digest> = p.layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = chain_ids(&diff_ids);
        for (i, l) in p.layers.iter().enumerate() {
            lease.protect_snapshot(&chains[i]);
            if self.has_snapshot(&chains[i]) {
                continue;
            }
            let f = self.open_blob(&l.blob)?;
            let s = self.unpack_layer(
                i.checked_sub(1).map(|k| &chains[k]),
                &l.diff_id,
                f,
                layer_compression(&l.media_type),
            )?;
            if s.created {
                added.snapshots.push(s.chain_id);
            }
        }
        Ok((self.record_from_manifest(&manifest, lease)?, p.tags.clone()))
    }

    /// Loads a Docker archive (`docker save` output, old or new style, plain or gzip'd, with
    /// plain or compressed layers) or an OCI archive; returns the loaded images, tagged from
    /// `RepoTags` or the `io.containerd.image.name` / `org.opencontainers.image.ref.name`
    /// annotations. A hostile or corrupt archive is refused and leaves the store as it was.
    pub fn load(&self, reader: impl Read) -> Result<Vec<Image>> {
        let lease = self.lease();
        let tmp_root = self.path("tmp");
        let tmp = tempfile::Builder::new()
            .prefix("load-")
            .tempdir_in(&tmp_root)
            .map_err(io_err("creating a temp dir in", &tmp_root))?;
        let _active = self.activate(tmp.path().to_owned());
        let aliases = extract(reader, tmp.path())?;
        let ar = Extracted {
            dir: tmp.path(),
            aliases,
        };
        let plan = if member(&ar, "manifest.json")?.is_file() {
            plan_docker(&ar)?
        } else if member(&ar, "index.json")?.is_file() {
            plan_oci(&ar)?
        } else {
            return Err(invalid(
                "the archive has neither a manifest.json (Docker archive) nor an index.json (OCI archive)",
            ));
        };
        let mut added = Added::default();
        let mut records = Vec::new();
        for p in &plan {
            match self.store_planned(p, &mut added, &lease) {
                Ok((img, tags)) => records.push((img, tags, Vec::new())),
                Err(e) => {
                    self.rollback(&added);
                    return Err(e);
                }
            }
        }
        match self.commit_images(records) {
            Ok(images) => {
                tracing::debug!(images = images.len(), "archive loaded");
                Ok(images)
            }
            Err(e) => {
                self.rollback(&added);
                Err(e)
            }
        }
    }

    fn rollback(&self, added: &Added) {
        for d in &added.blobs {
            if let Err(e) = fs::remove_file(self.blob_path(d)) {
                tracing::warn!(blob = %d, error = %e, "could not remove a blob of a failed load");
            }
        }
        for c in &added.snapshots {
            if let Err(e) = self.delete_snapshot(c) {
                tracing::warn!(snapshot = %c, error = %e, "could not remove a snapshot of a failed load");
            }
        }
    }

    /// Writes images as an archive the way Docker ≥ 25 does (`docker save`): a Docker
    /// archive (`manifest.json`, `repositories`) that is also an OCI layout (`oci-layout`,
    /// `index.json`, `blobs/sha256/`), with uncompressed layers. An image named by a tag
    /// carries that tag; one named by ID carries none.
    pub fn save(&self, names: &[&str], out: impl Write) -> Result<()> {
        let mut items: Vec<(Image, Vec<Reference>)> = Vec::new();
        for name in names {
            let img = self.image(name)?;
            let tag = Reference::parse(name)
                .ok()
                .filter(|r| img.repo_tags.contains(r));
            match items.iter_mut().find(|(i, _)| i.id == img.id) {
                Some((_, tags)) => tags.extend(tag),
                None => items.push((img, tag.into_iter().collect())),
            }
        }
        let mut b = tar::Builder::new(out);
        for d in ["blobs/", "blobs/sha256/"] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(0);
            h.set_mtime(0);
            b.append_data(&mut h, d, io::empty())
                .map_err(io_err("writing the archive member", d))?;
        }
        let mut written = std::collections::HashSet::new();
        let mut index = Vec::new();
        let mut docker = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (img, tags) in &items {
            let config = self.read_blob(&img.id)?;
            let config_name = format!("blobs/sha256/{}", img.id.hex());
            if written.insert(config_name.clone()) {
                tar_add(&mut b, &config_name, config.len() as u64, &config[..])?;
            }
            let mut layer_names = Vec::new();
            for l in &img.layers {
                let name = format!("blobs/sha256/{}", l.diff_id.hex());
                if written.insert(name.clone()) {
                    let plain = skiff_unpack::decompressor(
                        self.open_blob(&l.blob)?,
                        layer_compression(&l.media_type),
                    )
                    .map_err(|source| Error::Unpack {
                        layer: l.diff_id.to_string(),
                        source,
                    })?;
                    let exact = Exact {
                        inner: plain,
                        left: l.tar_size,
                        what: format!("layer {}", l.diff_id),
                    };
                    tar_add(&mut b, &name, l.tar_size, exact)?;
                }
                layer_names.push(name);
            }
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": MT_MANIFEST,
                "config": {"mediaType": MT_CONFIG, "digest": img.id.to_string(), "size": config.len()},
                "layers": img.layers.iter().map(|l| json!({
                    "mediaType": MT_LAYER, "digest": l.diff_id.to_string(), "size": l.tar_size,
                })).collect::<Vec<_>>(),
            });
            let manifest = serde_json::to_vec(&manifest).map_err(json_err("a manifest"))?;
            let md = sha256(&manifest);
            let mname = format!("blobs/sha256/{}", md.hex());
            if written.insert(mname.clone()) {
                tar_add(&mut b, &mname, manifest.len() as u64, &manifest[..])?;
            }
            let desc = |ann: Option<serde_json::Value>| {
                let mut d = json!({"mediaType": MT_MANIFEST, "digest": md.to_string(), "size": manifest.len()});
                if let Some(a) = ann {
                    d["annotations"] = a;
                }
                d
            };
            if tags.is_empty() {
                index.push(desc(None));
            }
            for t in tags {
                index.push(desc(Some(json!({
                    ANNOTATION_IMAGE_NAME: t.to_string(),
                    ANNOTATION_REF_NAME: t.tag().unwrap_or("latest"),
                }))));
                let tag = t.tag().unwrap_or("latest");
                let fam = t.familiar();
                let repo = fam
                    .strip_suffix(&format!(":{tag}"))
                    .unwrap_or(&fam)
                    .to_owned();
                if let Some(top) = img.layers.last() {
                    repositories
                        .entry(repo)
                        .or_default()
                        .insert(tag.to_owned(), top.diff_id.hex().to_owned());
                }
            }
            docker.push(DockerEntry {
                config: config_name,
                repo_tags: Some(tags.iter().map(Reference::familiar).collect()),
                layers: layer_names,
            });
        }
        let docs: [(&str, Vec<u8>); 4] = [
            (
                "index.json",
                serde_json::to_vec(
                    &json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": index}),
                )
                .map_err(json_err("index.json"))?,
            ),
            (
                "manifest.json",
                serde_json::to_vec(&docker).map_err(json_err("manifest.json"))?,
            ),
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            (
                "repositories",
                serde_json::to_vec(&repositories).map_err(json_err("repositories"))?,
            ),
        ];
        for (name, data) in docs {
            tar_add(&mut b, name, data.len() as u64, &data[..])?;
        }
        b.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(io_err("finishing the archive of", self.root()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names() {
        assert_eq!(clean_name("a/./b/"), Some(PathBuf::from("a/b")));
        assert_eq!(clean_name("../x"), None);
        assert_eq!(clean_name("a/../../x"), None);
        assert_eq!(clean_name("/etc/passwd"), None);
        assert_eq!(clean_name("."), None);
        let h = "a".repeat(64);
        assert_eq!(
            named_digest(&format!("blobs/sha256/{h}"))
                .unwrap()
                .to_string(),
            format!("sha256:{h}")
        );
        assert_eq!(
            named_digest(&format!("{h}.json")).unwrap().to_string(),
            format!("sha256:{h}")
        );
        assert!(named_digest("abc/layer.tar").is_none());
    }

    #[test]
    fn annotations_to_tags() {
        let mut a = HashMap::new();
        a.insert(ANNOTATION_REF_NAME.to_owned(), "latest".to_owned());
        assert!(tags_from(Some(&a)).is_empty());
        a.insert(ANNOTATION_REF_NAME.to_owned(), "busybox:1".to_owned());
        assert_eq!(
            tags_from(Some(&a))[0].to_string(),
            "docker.io/library/busybox:1"
        );
        a.insert(
            ANNOTATION_IMAGE_NAME.to_owned(),
            "docker.io/x/y:2".to_owned(),
        );
        assert_eq!(tags_from(Some(&a))[0].to_string(), "docker.io/x/y:2");
    }

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (n, d) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            // set_path refuses `..`; write the raw name.
            let name = n.as_bytes();
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            b.append(&h, *d).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn extraction_refuses_escapes_and_links() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[("../evil", b"x")]);
        let e = extract(&t[..], d.path()).unwrap_err();
        assert!(e.to_string().contains("../evil"), "{e}");
        let t = tar_of(&[("/abs", b"x")]);
        assert!(extract(&t[..], d.path()).is_err());
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "blobs/sha256/x", "/etc/passwd")
            .unwrap();
        let t = b.into_inner().unwrap();
        let e = extract(&t[..], d.path()).unwrap_err();
        assert!(e.to_string().contains("outside the archive"), "{e}");
        let t = tar_of(&[("a", b"x"), ("a", b"y")]);
        let d2 = tempfile::tempdir().unwrap();
        assert!(extract(&t[..], d2.path())
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }
}
