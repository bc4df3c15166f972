//! Image metadata: records, tags, lookups by name and ID prefix, removal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};
use skiff_reference::{Digest, Reference};
use skiff_unpack::Compression;

use crate::error::{Error, Result};
use crate::fsutil::{read_json, write_atomic};
use crate::snapshot::chain_ids;
use crate::{Meta, Store};

const STATE_FILE: &str = "images.json";
const STATE_VERSION: u32 = 1;

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// Digest of the layer blob as distributed (compressed or not).
    pub blob: Digest,
    /// The blob's media type (`application/vnd.oci.image.layer.v1.tar+gzip`, ...).
    pub media_type: String,
    /// Size of the blob.
    pub blob_size: u64,
    /// sha256 of the uncompressed tar (from the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// The layer's chain ID, the key of its snapshot.
    pub chain_id: Digest,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The image ID: the digest of its config blob.
    pub id: Digest,
    /// The manifest it was stored from.
    pub manifest: Digest,
    /// Repo tags (`docker.io/library/busybox:latest`), normalised.
    pub repo_tags: Vec<Reference>,
    /// Repo digests (`docker.io/library/busybox@sha256:...`) of the pulled manifest or index.
    pub repo_digests: Vec<Reference>,
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// The config's `created` time, if any.
    pub created: Option<String>,
    /// When it was put into this store (seconds since the epoch).
    pub added: u64,
}

impl Image {
    /// The short ID Docker prints: 12 hex characters.
    pub fn short_id(&self) -> &str {
        &self.id.hex()[..12]
    }

    /// The chain IDs of its layers, bottom first.
    pub fn chain_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.chain_id.clone()).collect()
    }
}

/// What [`Store::remove_image`] did, in order (Docker's `rmi` output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A tag or digest reference was removed.
    Untagged(Reference),
    /// The image record was deleted (its content goes at the next [`Store::gc`]).
    Deleted(Digest),
}

/// One entry of `docker history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The image ID for the top entry, `None` below (as Docker shows `<missing>`).
    pub id: Option<Digest>,
    /// When the step ran.
    pub created: Option<String>,
    /// The command.
    pub created_by: Option<String>,
    /// A comment.
    pub comment: Option<String>,
    /// Whether the step made no layer.
    pub empty_layer: bool,
    /// Size of the step's layer snapshot (0 for empty layers).
    pub size: u64,
}

/// What `docker image inspect` shows.
#[derive(Debug, Clone)]
pub struct ImageDetails {
    /// The record.
    pub image: Image,
    /// The parsed config.
    pub config: ImageConfiguration,
    /// The config exactly as stored (its sha256 is the image ID).
    pub raw_config: Vec<u8>,
    /// Sum of the sizes of the image's layer snapshots.
    pub size: u64,
}

/// The whole metadata document (`images.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct State {
    version: u32,
    /// Image ID -> record.
    pub(crate) images: BTreeMap<Digest, Image>,
}

/// The part of a config this crate needs, parsed leniently.
#[derive(Deserialize)]
pub(crate) struct MiniConfig {
    pub(crate) rootfs: MiniRootfs,
    #[serde(default)]
    pub(crate) created: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct MiniRootfs {
    #[serde(default)]
    pub(crate) diff_ids: Vec<Digest>,
}

pub(crate) fn json_err(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Error {
    let what = what.into();
    move |source| Error::Json { what, source }
}

impl State {
    pub(crate) fn load(root: &Path) -> Result<State> {
        let p = root.join(STATE_FILE);
        if !p.exists() {
            return Ok(State {
                version: STATE_VERSION,
                images: BTreeMap::new(),
            });
        }
        let s: State = read_json(&p)?;
        if s.version != STATE_VERSION {
            return Err(Error::Invalid(format!(
                "{} has version {}, this skiff reads version {STATE_VERSION}",
                p.display(),
                s.version
            )));
        }
        Ok(s)
    }

    fn save(&self, root: &Path) -> Result<()> {
        let data = serde_json::to_vec(self).map_err(json_err("the image metadata"))?;
        write_atomic(&root.join(STATE_FILE), &data)
    }

    fn find_tag(&self, r: &Reference) -> Option<&Digest> {
        self.images
            .values()
            .find(|i| i.repo_tags.contains(r) || i.repo_digests.contains(r))
            .map(|i| &i.id)
    }

    /// Removes `r` from whichever image has it.
    fn drop_ref(&mut self, r: &Reference) {
        for i in self.images.values_mut() {
            i.repo_tags.retain(|t| t != r);
            i.repo_digests.retain(|t| t != r);
        }
    }
}

/// How a lookup string matched.
enum Match {
    Id(Digest),
    Ref(Digest, Reference),
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Media type -> how to decompress the layer.
pub(crate) fn layer_compression(media_type: &str) -> Compression {
    if media_type.ends_with("gzip") {
        Compression::Gzip
    } else if media_type.ends_with("zstd") {
        Compression::Zstd
    } else if media_type.ends_with(".tar") {
        Compression::None
    } else {
        Compression::Detect
    }
}

impl Store {
    /// Applies `f` to a copy of the state and writes it; the in-memory state changes only
    /// if the write succeeded.
    pub(crate) fn update<T>(
        &self,
        meta: &mut Meta,
        f: impl FnOnce(&mut State) -> Result<T>,
    ) -> Result<T> {
        let mut next = meta.state.clone();
        let out = f(&mut next)?;
        next.save(self.root())?;
        meta.state = next;
        Ok(out)
    }

    /// Reads a manifest from the content store and builds the image record it describes;
    /// unpacks layers that have no snapshot yet from their blobs.
    /// `lease` keeps gc away from the content until the caller has written the record.
    pub(crate) fn record_from_manifest(
        &self,
        manifest: &Digest,
        lease: &crate::Lease,
    ) -> Result<Image> {
        lease.protect_blob(manifest);
        let raw = self.read_blob(manifest)?;
        let m = ImageManifest::from_reader(&raw[..]).map_err(|e| {
            Error::Invalid(format!(
                "manifest {manifest} is not a valid image manifest: {e}"
            ))
        })?;
        let config_digest =
            Digest::parse(m.config().digest().as_ref()).map_err(|source| Error::InvalidDigest {
                input: m.config().digest().to_string(),
                source,
            })?;
        lease.protect_blob(&config_digest);
        let raw_config = self.read_blob(&config_digest)?;
        let config: MiniConfig = serde_json::from_slice(&raw_config)
            .map_err(json_err(format!("the config {config_digest}")))?;
        if config.rootfs.diff_ids.len() != m.layers().len() {
            return Err(Error::Invalid(format!(
                "manifest {manifest} has {} layers but its config {config_digest} lists {} diffIDs",
                m.layers().len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let chains = chain_ids(&config.rootfs.diff_ids);
        for c in &chains {
            lease.protect_snapshot(c);
        }
        let mut layers = Vec::new();
        for (i, d) in m.layers().iter().enumerate() {
            let blob =
                Digest::parse(d.digest().as_ref()).map_err(|source| Error::InvalidDigest {
                    input: d.digest().to_string(),
                    source,
                })?;
            lease.protect_blob(&blob);
            let media_type = d.media_type().to_string();
            let diff_id = config.rootfs.diff_ids[i].clone();
            let snap = if self.has_snapshot(&chains[i]) {
                self.snapshot(&chains[i])?
            } else {
                let f = self.open_blob(&blob)?;
                self.unpack_layer(
                    i.checked_sub(1).map(|p| &chains[p]),
                    &diff_id,
                    f,
                    layer_compression(&media_type),
                )?
            };
            layers.push(Layer {
                blob_size: self.blob_size(&blob)?,
                blob,
                media_type,
                diff_id,
                chain_id: chains[i].clone(),
                tar_size: snap.tar_size,
            });
        }
        Ok(Image {
            id: config_digest,
            manifest: manifest.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            layers,
            created: config.created,
            added: now(),
        })
    }

    /// Records the image described by a stored manifest (its config and layer blobs must be
    /// stored; missing snapshots are unpacked from the blobs) and points `tags` and
    /// `repo_digests` at it, taking them from other images. Putting an image again merges
    /// its references.
    pub fn put_image(
        &self,
        manifest: &Digest,
        tags: &[Reference],
        repo_digests: &[Reference],
    ) -> Result<Image> {
        let lease = self.lease();
        let record = self.record_from_manifest(manifest, &lease)?;
        let mut out = self.commit_images(vec![(record, tags.to_vec(), repo_digests.to_vec())])?;
        Ok(out.remove(0))
    }

    /// Adds several records in one metadata write.
    pub(crate) fn commit_images(
        &self,
        records: Vec<(Image, Vec<Reference>, Vec<Reference>)>,
    ) -> Result<Vec<Image>> {
        for (_, tags, digests) in &records {
            for t in tags {
                check_tag(t)?;
            }
            for d in digests {
                if d.digest().is_none() {
                    return Err(Error::Invalid(format!(
                        "repo digest {d} has no @digest part"
                    )));
                }
            }
        }
        let mut meta = self.meta();
        self.update(&mut meta, |state| {
            let mut out = Vec::new();
            for (record, tags, digests) in records {
                let id = record.id.clone();
                for r in tags.iter().chain(&digests) {
                    state.drop_ref(r);
                }
                let entry = state
                    .images
                    .entry(id.clone())
                    .or_insert_with(|| record.clone());
                // The newest manifest wins, with its layer blobs (the old ones go at gc).
                entry.manifest = record.manifest.clone();
                entry.layers = record.layers.clone();
                for t in tags {
                    entry.repo_tags.push(t);
                }
                for d in digests {
                    entry.repo_digests.push(d);
                }
                out.push(id);
            }
            Ok(out
                .iter()
                .filter_map(|id| state.images.get(id).cloned())
                .collect())
        })
    }

    fn resolve_in(state: &State, s: &str) -> Result<Match> {
        let hex_part = s.strip_prefix("sha256:");
        if let Some(h) = hex_part {
            if !is_hex(h) {
                return Err(Error::ImageNotFound(s.to_owned()));
            }
            return Self::by_prefix(state, h, s).map(Match::Id);
        }
        if s.len() == 64 && is_hex(s) {
            return Self::by_prefix(state, s, s).map(Match::Id);
        }
        if let Ok(r) = Reference::parse(s) {
            let key = match (r.digest(), r.tag()) {
                // name:tag@digest: the digest decides, as in Docker.
                (Some(d), Some(_)) => Reference::parse(&format!("{}@{d}", r.name())).unwrap_or(r),
                _ => r,
            };
            if let Some(id) = state.find_tag(&key) {
                return Ok(Match::Ref(id.clone(), key));
            }
        }
        if is_hex(s) {
            return Self::by_prefix(state, s, s).map(Match::Id);
        }
        Err(Error::ImageNotFound(s.to_owned()))
    }

    fn by_prefix(state: &State, hex: &str, input: &str) -> Result<Digest> {
        let hits: Vec<&Digest> = state
            .images
            .keys()
            .filter(|id| id.hex().starts_with(hex))
            .collect();
        match hits.len() {
            0 => Err(Error::ImageNotFound(input.to_owned())),
            1 => Ok(hits[0].clone()),
            count => Err(Error::AmbiguousPrefix {
                prefix: input.to_owned(),
                count,
            }),
        }
    }

    /// Finds an image by familiar or full name (`busybox`, `busybox:1.36`,
    /// `docker.io/library/busybox@sha256:...`), full ID (`sha256:<hex>` or `<hex>`) or unique
    /// ID prefix (`3f57d9401f8d`, `sha256:3f57`).
    pub fn image(&self, name_or_id: &str) -> Result<Image> {
        let meta = self.meta();
        let id = match Self::resolve_in(&meta.state, name_or_id)? {
            Match::Id(id) | Match::Ref(id, _) => id,
        };
        meta.state
            .images
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(name_or_id.to_owned()))
    }

    /// All images, ordered by ID.
    pub fn images(&self) -> Vec<Image> {
        self.meta().state.images.values().cloned().collect()
    }

    /// Points `tag` at an image (moving it from another image if needed).
    pub fn tag(&self, name_or_id: &str, tag: &Reference) -> Result<()> {
        check_tag(tag)?;
        let mut meta = self.meta();
        let id = match Self::resolve_in(&meta.state, name_or_id)? {
            Match::Id(id) | Match::Ref(id, _) => id,
        };
        self.update(&mut meta, |state| {
            state.drop_ref(tag);
            if let Some(i) = state.images.get_mut(&id) {
                i.repo_tags.push(tag.clone());
            }
            Ok(())
        })
    }

    /// Removes a tag (or repo digest) reference; the image stays, even if it has no other
    /// reference (it becomes dangling). Returns the image it pointed to.
    pub fn untag(&self, reference: &Reference) -> Result<Digest> {
        let mut meta = self.meta();
        let id = meta
            .state
            .find_tag(reference)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(reference.to_string()))?;
        self.update(&mut meta, |state| {
            state.drop_ref(reference);
            Ok(())
        })?;
        Ok(id)
    }

    /// Removes an image as `docker rmi` does.
    ///
    /// By reference: the reference is removed (with the repo digests of that repository
    /// when no tag of it remains); the image itself is deleted only when no reference is
    /// left. By ID: all references and the image are removed, but an image tagged in
    /// several repositories needs `force`. An image used by a container rootfs is refused
    /// unless `force` (its layers stay until the container is removed).
    pub fn remove_image(&self, name_or_id: &str, force: bool) -> Result<Vec<Removed>> {
        let mut meta = self.meta();
        let m = Self::resolve_in(&meta.state, name_or_id)?;
        let id = match &m {
            Match::Id(id) | Match::Ref(id, _) => id.clone(),
        };
        let users: Vec<String> = meta
            .containers
            .values()
            .filter(|c| c.image_id == id)
            .map(|c| c.container_id.clone())
            .collect();
        let image = meta
            .state
            .images
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound(name_or_id.to_owned()))?;
        let in_use = |what: &str| Error::ImageInUse {
            image: id.to_string(),
            why: format!("{what} is used by container {}", users.join(", ")),
        };
        let mut removed = Vec::new();
        match m {
            Match::Ref(_, r) => {
                let mut rest = image.clone();
                rest.repo_tags.retain(|t| *t != r);
                rest.repo_digests.retain(|t| *t != r);
                if !rest.repo_tags.iter().any(|t| t.name() == r.name()) {
                    rest.repo_digests.retain(|d| d.name() != r.name());
                }
                let gone: Vec<Reference> = image
                    .repo_tags
                    .iter()
                    .chain(&image.repo_digests)
                    .filter(|x| !rest.repo_tags.contains(x) && !rest.repo_digests.contains(x))
                    .cloned()
                    .collect();
                let delete = rest.repo_tags.is_empty() && rest.repo_digests.is_empty();
                if delete && !users.is_empty() && !force {
                    return Err(in_use(&format!("its last reference {}", r.familiar())));
                }
                self.update(&mut meta, |state| {
                    if delete {
                        state.images.remove(&id);
                    } else {
                        state.images.insert(id.clone(), rest);
                    }
                    Ok(())
                })?;
                removed.extend(gone.into_iter().map(Removed::Untagged));
                if delete {
                    removed.push(Removed::Deleted(id));
                }
            }
            Match::Id(_) => {
                let repos: BTreeSet<String> = image.repo_tags.iter().map(|t| t.name()).collect();
                if repos.len() > 1 && !force {
                    return Err(Error::ImageInUse {
                        image: id.to_string(),
                        why: format!(
                            "it is referenced in {} repositories ({})",
                            repos.len(),
                            repos.into_iter().collect::<Vec<_>>().join(", ")
                        ),
                    });
                }
                if !users.is_empty() && !force {
                    return Err(in_use("it"));
                }
                self.update(&mut meta, |state| {
                    state.images.remove(&id);
                    Ok(())
                })?;
                removed.extend(
                    image
                        .repo_tags
                        .iter()
                        .chain(&image.repo_digests)
                        .cloned()
                        .map(Removed::Untagged),
                );
                removed.push(Removed::Deleted(id));
            }
        }
        tracing::debug!(image = name_or_id, ?removed, "image removed");
        Ok(removed)
    }

    /// The raw config of an image (its sha256 is the image ID).
    pub fn raw_config(&self, name_or_id: &str) -> Result<Vec<u8>> {
        let image = self.image(name_or_id)?;
        self.read_blob(&image.id)
    }

    /// What `docker image inspect` needs.
    pub fn inspect(&self, name_or_id: &str) -> Result<ImageDetails> {
        let image = self.image(name_or_id)?;
        let raw_config = self.read_blob(&image.id)?;
        let config = ImageConfiguration::from_reader(&raw_config[..]).map_err(|e| {
            Error::Invalid(format!(
                "the config of image {} is not valid: {e}",
                image.id
            ))
        })?;
        let mut size = 0;
        for l in &image.layers {
            size += self.snapshot(&l.chain_id)?.size;
        }
        Ok(ImageDetails {
            image,
            config,
            raw_config,
            size,
        })
    }

    /// `docker history`: the config's history, newest first, with layer sizes.
    pub fn history(&self, name_or_id: &str) -> Result<Vec<HistoryEntry>> {
        let details = self.inspect(name_or_id)?;
        let mut sizes = Vec::new();
        for l in &details.image.layers {
            sizes.push(self.snapshot(&l.chain_id).map(|s| s.size).unwrap_or(0));
        }
        let mut out = Vec::new();
        let mut layer = 0;
        let hist = details.config.history().clone().unwrap_or_default();
        for h in hist {
            let empty = h.empty_layer().unwrap_or(false);
            let size = if empty {
                0
            } else {
                layer += 1;
                sizes.get(layer - 1).copied().unwrap_or(0)
            };
            out.push(HistoryEntry {
                id: None,
                created: h.created().clone(),
                created_by: h.created_by().clone(),
                comment: h.comment().clone(),
                empty_layer: empty,
                size,
            });
        }
        // Layers without history entries (some tools write none).
        for s in sizes.iter().skip(layer) {
            out.push(HistoryEntry {
                id: None,
                created: None,
                created_by: None,
                comment: None,
                empty_layer: false,
                size: *s,
            });
        }
        out.reverse();
        if let Some(top) = out.first_mut() {
            top.id = Some(details.image.id.clone());
        }
        Ok(out)
    }
}

fn check_tag(t: &Reference) -> Result<()> {
    if t.digest().is_some() || t.tag().is_none() {
        return Err(Error::Invalid(format!(
            "{t} cannot be used as a tag: a tag reference has a tag and no digest"
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::StoreOptions;
    use std::io::Write;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    /// Stores a tiny image (one empty layer tar) whose config has `label`.
    pub(crate) fn fake_image(s: &Store, label: &str) -> Digest {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(label.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, "label.txt", label.as_bytes())
            .unwrap();
        let layer = tar.into_inner().unwrap();
        let layer_d = s.put_bytes(&layer).unwrap();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"l": label}},
            "rootfs": {"type": "layers", "diff_ids": [layer_d.to_string()]},
            "history": [{"created_by": "test"}],
        });
        let config = serde_json::to_vec(&config).unwrap();
        let config_d = s.put_bytes(&config).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_d.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_d.to_string(), "size": layer.len()}],
        });
        s.put_bytes(&serde_json::to_vec(&manifest).unwrap())
            .unwrap()
    }

    /// A store that works without root (no chown, no xattrs).
    pub(crate) fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path(), opts()).unwrap();
        (d, s)
    }

    fn opts() -> StoreOptions {
        StoreOptions {
            driver: crate::Driver::Vfs,
            unpack: skiff_unpack::Options {
                preserve_ownership: false,
                preserve_xattrs: false,
                ..Default::default()
            },
        }
    }

    #[test]
    fn put_tag_lookup() {
        let (_d, s) = store();
        let m = fake_image(&s, "one");
        let img = s.put_image(&m, &[r("busybox")], &[]).unwrap();
        assert_eq!(img.repo_tags, vec![r("docker.io/library/busybox:latest")]);
        assert_eq!(s.image("busybox").unwrap().id, img.id);
        assert_eq!(s.image("busybox:latest").unwrap().id, img.id);
        assert_eq!(s.image("docker.io/library/busybox").unwrap().id, img.id);
        assert_eq!(s.image(&img.id.to_string()).unwrap().id, img.id);
        assert_eq!(s.image(img.id.hex()).unwrap().id, img.id);
        assert_eq!(s.image(img.short_id()).unwrap().id, img.id);
        assert_eq!(
            s.image(&format!("sha256:{}", &img.id.hex()[..5]))
                .unwrap()
                .id,
            img.id
        );
        assert!(matches!(
            s.image("busybox:other"),
            Err(Error::ImageNotFound(_))
        ));
        assert!(matches!(s.image("nothere"), Err(Error::ImageNotFound(_))));
        // The snapshot was unpacked from the blob.
        assert!(s.has_snapshot(&img.layers[0].chain_id));
        // Reopen: same state.
        drop(s);
        let s = Store::open(_d.path(), opts()).unwrap();
        assert_eq!(s.image("busybox").unwrap(), img);
    }

    #[test]
    fn ambiguous_prefix() {
        let (_d, s) = store();
        let mut ids = Vec::new();
        for i in 0..40 {
            let m = fake_image(&s, &format!("img{i}"));
            ids.push(s.put_image(&m, &[], &[]).unwrap().id);
        }
        // Find two IDs sharing the first hex digit.
        let a = &ids[0];
        let b = ids[1..]
            .iter()
            .find(|x| x.hex()[..1] == a.hex()[..1])
            .unwrap();
        let err = s.image(&a.hex()[..1]).unwrap_err();
        assert!(
            matches!(err, Error::AmbiguousPrefix { count, .. } if count >= 2),
            "{err}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::Conflict);
        let common = a
            .hex()
            .chars()
            .zip(b.hex().chars())
            .take_while(|(x, y)| x == y)
            .count();
        assert_eq!(s.image(&a.hex()[..=common]).unwrap().id, *a);
    }

    #[test]
    fn tags_move_and_untag() {
        let (_d, s) = store();
        let a = s
            .put_image(&fake_image(&s, "a"), &[r("app:1")], &[])
            .unwrap();
        let b = s
            .put_image(&fake_image(&s, "b"), &[r("app:2")], &[])
            .unwrap();
        s.tag("app:2", &r("app:1")).unwrap();
        assert_eq!(s.image("app:1").unwrap().id, b.id);
        assert!(s.image(&a.id.to_string()).unwrap().repo_tags.is_empty());
        assert_eq!(s.untag(&r("app:1")).unwrap(), b.id);
        assert!(s.image("app:1").is_err());
        assert!(s
            .tag("app:2", &r(&format!("app@sha256:{}", "a".repeat(64))))
            .is_err());
    }

    #[test]
    fn remove_semantics() {
        let (_d, s) = store();
        let img = s
            .put_image(&fake_image(&s, "a"), &[r("app:1"), r("app:2")], &[])
            .unwrap();
        // By tag with another tag left: untag only.
        assert_eq!(
            s.remove_image("app:1", false).unwrap(),
            vec![Removed::Untagged(r("app:1"))]
        );
        assert!(s.image(img.short_id()).is_ok());
        // By ID with tags in two repositories: needs force.
        s.tag("app:2", &r("other:1")).unwrap();
        let err = s.remove_image(img.short_id(), false).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Conflict, "{err}");
        s.untag(&r("other:1")).unwrap();
        // Last tag: deleted.
        let out = s.remove_image("app:2", false).unwrap();
        assert_eq!(
            out,
            vec![
                Removed::Untagged(r("app:2")),
                Removed::Deleted(img.id.clone())
            ]
        );
        assert!(s.images().is_empty());
        // Same repository, several tags, by ID: fine without force.
        let img = s
            .put_image(&fake_image(&s, "b"), &[r("x:1"), r("x:2")], &[])
            .unwrap();
        let out = s.remove_image(&img.id.to_string(), false).unwrap();
        assert_eq!(out.len(), 3);
        // Forced with two repositories.
        let img = s
            .put_image(&fake_image(&s, "c"), &[r("x:1"), r("y:2")], &[])
            .unwrap();
        assert!(s.remove_image(img.id.hex(), true).is_ok());
    }

    #[test]
    fn repo_digests_lookup_and_removal() {
        let (_d, s) = store();
        let m = fake_image(&s, "a");
        let dig = r(&format!("busybox@{m}"));
        let img = s
            .put_image(&m, &[r("busybox:1")], std::slice::from_ref(&dig))
            .unwrap();
        assert_eq!(s.image(&format!("busybox@{m}")).unwrap().id, img.id);
        // Removing the last tag of the repository also drops its digest refs and the image.
        let out = s.remove_image("busybox:1", false).unwrap();
        assert!(out.contains(&Removed::Untagged(dig)));
        assert!(out.contains(&Removed::Deleted(img.id)));
    }

    #[test]
    fn history_and_inspect() {
        let (_d, s) = store();
        let img = s
            .put_image(&fake_image(&s, "hello"), &[r("h")], &[])
            .unwrap();
        let h = s.history("h").unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].id.as_ref(), Some(&img.id));
        assert_eq!(h[0].created_by.as_deref(), Some("test"));
        assert_eq!(h[0].size, 5);
        let d = s.inspect("h").unwrap();
        assert_eq!(d.size, 5);
        assert_eq!(crate::fsutil::sha256(&d.raw_config), img.id);
    }

    #[test]
    fn state_write_is_atomic_file() {
        let (d, s) = store();
        s.put_image(&fake_image(&s, "a"), &[r("a")], &[]).unwrap();
        let mut f = std::fs::File::create(d.path().join("junk")).unwrap();
        f.write_all(b"x").unwrap();
        // No temp files next to images.json.
        let tmp: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(tmp.is_empty());
    }
}
