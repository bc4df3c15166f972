//! `docker pull`: registry -> content store + snapshots -> image record.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skiff_reference::{Digest, Reference};
use skiff_registry::{Client, Descriptor, Platform};
use skiff_store::{Compression, Image, Store};

use crate::pool::{self, Ctx};
use crate::{short_id, Error, Progress, Result};

/// Largest config blob accepted.
const CONFIG_LIMIT: u64 = 16 << 20;
/// Minimum time between two `Downloading` messages of a layer.
const TICK: Duration = Duration::from_millis(100);

/// Settings of a pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Layers downloaded (and unpacked) at once; dockerd's `max-concurrent-downloads`.
    pub max_concurrent_downloads: usize,
    /// Set to abandon the pull (a client went away): running downloads stop at their next
    /// read, nothing is recorded, and the pull fails with [`Error::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            max_concurrent_downloads: 3,
            cancel: None,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// The image record, as stored.
    pub image: Image,
    /// The digest of what the reference named (the index for a multi-platform image):
    /// the image's repo digest.
    pub digest: Digest,
    /// The digest of the platform's image manifest.
    pub manifest: Digest,
    /// The platform picked from an index, if there was one.
    pub platform: Option<Platform>,
    /// Layer blobs downloaded (0 when everything was there).
    pub layers_downloaded: usize,
    /// Layer bytes downloaded.
    pub bytes_downloaded: u64,
    /// Whether the reference already named this image before the pull.
    pub up_to_date: bool,
}

/// Pulls `reference` for `platform` into `store` with default options.
pub fn pull(
    store: &Store,
    client: &Client,
    reference: &Reference,
    platform: &Platform,
    progress: &mut dyn FnMut(Progress),
) -> Result<PullResult> {
    pull_with(
        store,
        client,
        reference,
        platform,
        &PullOptions::default(),
        progress,
    )
}

/// One layer to fetch.
struct Job {
    index: usize,
    descriptor: Descriptor,
    blob: Digest,
    diff_id: Digest,
    parent: Option<Digest>,
}

/// Pulls `reference` for `platform` into `store` (see the crate docs).
pub fn pull_with(
    store: &Store,
    client: &Client,
    reference: &Reference,
    platform: &Platform,
    opts: &PullOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<PullResult> {
    let shown_id = match (reference.tag(), reference.digest()) {
        (_, Some(d)) => d.to_string(),
        (Some(t), None) => t.to_owned(),
        (None, None) => "latest".to_owned(),
    };
    // name:tag@digest: the digest decides, and no tag is recorded (as in Docker).
    let tag_ref = match (reference.tag(), reference.digest()) {
        (Some(_), None) => Some(reference.clone()),
        _ => None,
    };
    let before = store.image(&reference.to_string()).ok().map(|i| i.id);
    progress(Progress::with_id(
        format!("Pulling from {}", reference.repository()),
        shown_id,
    ));
    let resolved = client.resolve(reference, platform)?;
    let lease = store.lease();

    // Manifests first (the index only so that the repo digest's content is at hand).
    if let Some(index) = &resolved.index {
        lease.protect_blob(&index.digest);
        if !store.has_blob(&index.digest) {
            store.put_blob(&index.digest, &index.bytes[..])?;
        }
    }
    let manifest = &resolved.manifest;
    lease.protect_blob(&manifest.digest);
    if !store.has_blob(&manifest.digest) {
        store.put_blob(&manifest.digest, &manifest.bytes[..])?;
    }

    // The config, verified by the registry client against its digest.
    let config_digest = descriptor_digest(&resolved.config)?;
    lease.protect_blob(&config_digest);
    let raw_config = if store.has_blob(&config_digest) {
        let mut v = Vec::new();
        store
            .open_blob(&config_digest)?
            .read_to_end(&mut v)
            .map_err(|e| Error::Invalid(format!("reading config {config_digest}: {e}")))?;
        v
    } else {
        let v = client.fetch_blob_bytes(reference, &resolved.config, CONFIG_LIMIT)?;
        store.put_blob(&config_digest, &v[..])?;
        v
    };
    let diff_ids = config_diff_ids(&raw_config, &config_digest)?;
    if diff_ids.len() != resolved.layers.len() {
        return Err(Error::Invalid(format!(
            "manifest {} has {} layers but its config {config_digest} lists {} diffIDs",
            manifest.digest,
            resolved.layers.len(),
            diff_ids.len()
        )));
    }
    let chains = skiff_store::chain_ids(&diff_ids);

    let mut jobs = Vec::new();
    for (i, d) in resolved.layers.iter().enumerate() {
        let blob = descriptor_digest(d)?;
        lease.protect_blob(&blob);
        lease.protect_snapshot(&chains[i]);
        let id = short_id(&blob);
        if store.has_blob(&blob) && store.has_snapshot(&chains[i]) {
            progress(Progress::layer("Already exists", id));
            continue;
        }
        progress(Progress::layer("Pulling fs layer", id));
        jobs.push(Job {
            index: i,
            descriptor: d.clone(),
            blob,
            diff_id: diff_ids[i].clone(),
            parent: i.checked_sub(1).map(|p| chains[p].clone()),
        });
    }
    let workers = opts.max_concurrent_downloads.max(1);
    for j in jobs.iter().skip(workers) {
        progress(Progress::layer("Waiting", short_id(&j.blob)));
    }
    let layers_downloaded = jobs.len();
    let bytes = AtomicU64::new(0);
    pool::run(
        jobs,
        workers,
        opts.cancel.as_deref(),
        progress,
        |job, ctx| {
            let layer = job.blob.clone();
            tracing::debug!(index = job.index, %layer, "pulling layer");
            pull_layer(store, client, reference, &job, ctx, &bytes).map_err(|e| match e {
                Error::Cancelled => Error::Cancelled,
                e => Error::Layer {
                    layer,
                    cause: Box::new(e),
                },
            })
        },
    )?;

    if opts
        .cancel
        .as_ref()
        .is_some_and(|c| c.load(Ordering::Relaxed))
    {
        return Err(Error::Cancelled);
    }
    let repo_digest = Reference::parse(&format!("{}@{}", reference.name(), resolved.digest))
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let tags: Vec<Reference> = tag_ref.into_iter().collect();
    let image = store.put_image(&manifest.digest, &tags, &[repo_digest])?;
    drop(lease);
    let up_to_date = layers_downloaded == 0 && before.as_ref() == Some(&image.id);
    progress(Progress::status(format!("Digest: {}", resolved.digest)));
    progress(Progress::status(if up_to_date {
        format!("Status: Image is up to date for {}", reference.familiar())
    } else {
        format!(
            "Status: Downloaded newer image for {}",
            reference.familiar()
        )
    }));
    Ok(PullResult {
        image,
        digest: resolved.digest.clone(),
        manifest: manifest.digest.clone(),
        platform: resolved.platform.clone(),
        layers_downloaded,
        bytes_downloaded: bytes.load(Ordering::Relaxed),
        up_to_date,
    })
}

/// The digest of a descriptor, parsed.
pub(crate) fn descriptor_digest(d: &Descriptor) -> Result<Digest> {
    Digest::parse(d.digest().as_ref())
        .map_err(|e| Error::Invalid(format!("bad digest {:?}: {e}", d.digest().to_string())))
}

fn config_diff_ids(raw: &[u8], digest: &Digest) -> Result<Vec<Digest>> {
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: Rootfs,
    }
    #[derive(serde::Deserialize)]
    struct Rootfs {
        #[serde(default)]
        diff_ids: Vec<Digest>,
    }
    let c: Config = serde_json::from_slice(raw)
        .map_err(|e| Error::Invalid(format!("config {digest} is not an image config: {e}")))?;
    Ok(c.rootfs.diff_ids)
}

/// How a layer media type is compressed.
pub(crate) fn compression(media_type: &str) -> Compression {
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

/// Wraps the download: counts bytes, sends `Downloading` messages, stops when the pull
/// is abandoned, and keeps the registry's error (a digest mismatch) for the report.
struct Download<'a, 'c, R> {
    inner: R,
    ctx: &'a Ctx<'c>,
    id: String,
    total: u64,
    done: u64,
    last: Instant,
    failure: Arc<Mutex<Option<skiff_registry::Error>>>,
    bytes: &'a AtomicU64,
}

impl<R: Read> Read for Download<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ctx.aborted() {
            return Err(io::Error::other("pull abandoned: another layer failed"));
        }
        match self.inner.read(buf) {
            Ok(n) => {
                self.done += n as u64;
                self.bytes.fetch_add(n as u64, Ordering::Relaxed);
                if n > 0 && self.last.elapsed() >= TICK {
                    self.last = Instant::now();
                    self.ctx.send(Progress::bytes(
                        "Downloading",
                        self.id.clone(),
                        self.done,
                        self.total,
                    ));
                }
                Ok(n)
            }
            Err(e) => {
                let kind = e.kind();
                let msg = e.to_string();
                if skiff_registry::Error::from_io(&e).is_some() {
                    if let Some(inner) = e.into_inner() {
                        if let Ok(re) = inner.downcast::<skiff_registry::Error>() {
                            *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(*re);
                        }
                    }
                }
                Err(io::Error::new(kind, msg))
            }
        }
    }
}

fn pull_layer(
    store: &Store,
    client: &Client,
    reference: &Reference,
    job: &Job,
    ctx: &Ctx<'_>,
    bytes: &AtomicU64,
) -> Result<()> {
    if ctx.aborted() {
        return Err(Error::Cancelled);
    }
    let id = short_id(&job.blob);
    let total = job.descriptor.size();
    let reader = client.fetch_blob(reference, &job.descriptor)?;
    ctx.send(Progress::bytes("Downloading", id.clone(), 0, total));
    let failure = Arc::new(Mutex::new(None));
    let download = Download {
        inner: reader,
        ctx,
        id: id.clone(),
        total,
        done: 0,
        last: Instant::now(),
        failure: failure.clone(),
        bytes,
    };
    let take_failure = || failure.lock().unwrap_or_else(|e| e.into_inner()).take();
    let mut writer = store.blob_writer(Some(&job.blob))?;
    let mut tee = writer.tee(download);
    let unpacked = store.unpack_layer(
        job.parent.as_ref(),
        &job.diff_id,
        &mut tee,
        compression(job.descriptor.media_type().as_ref()),
    );
    if let Err(e) = unpacked {
        if ctx.aborted() {
            return Err(Error::Cancelled);
        }
        if let Some(re) = take_failure() {
            return Err(Error::Registry(re));
        }
        // A corrupt blob usually breaks the decompressor before its digest can be checked
        // at EOF: read the rest so that the real cause (a digest mismatch) is reported.
        let _ = io::copy(&mut tee, &mut io::sink());
        return Err(take_failure().map_or(Error::Store(e), Error::Registry));
    }
    // The unpacker may stop at the tar's end: the rest of the blob is still stored and
    // verified (the registry reader checks the digest at EOF).
    if let Err(e) = io::copy(&mut tee, &mut io::sink()) {
        if ctx.aborted() {
            return Err(Error::Cancelled);
        }
        return Err(take_failure().map_or_else(
            || Error::Invalid(format!("downloading layer {}: {e}", job.blob)),
            Error::Registry,
        ));
    }
    ctx.send(Progress::layer("Verifying Checksum", id.clone()));
    writer.commit()?;
    ctx.send(Progress::layer("Download complete", id.clone()));
    ctx.send(Progress::bytes("Extracting", id.clone(), total, total));
    ctx.send(Progress::layer("Pull complete", id));
    Ok(())
}
