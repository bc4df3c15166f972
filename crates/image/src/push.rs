//! `docker push`: store -> registry, manifest byte for byte.

use std::io::{self, Read};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_spec::image::ImageManifest;
use skiff_reference::{Digest, Reference};
use skiff_registry::{Client, UploadMode};
use skiff_store::Store;

use crate::pool::{self, Ctx};
use crate::pull::descriptor_digest;
use crate::{short_id, Error, Progress, Result};

/// Settings of a push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Layers uploaded at once; dockerd's `max-concurrent-uploads`.
    pub max_concurrent_uploads: usize,
    /// Blobs larger than this are uploaded in chunks.
    pub chunk_threshold: u64,
    /// The chunk size of chunked uploads.
    pub chunk_size: usize,
    /// Set to abandon the push: uploads stop at their next read, no manifest is sent.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            max_concurrent_uploads: 5,
            chunk_threshold: 16 << 20,
            chunk_size: 8 << 20,
            cancel: None,
        }
    }
}

/// Pushes the stored image `image` (name or ID) as `target` with default options; returns
/// the manifest digest.
pub fn push(
    store: &Store,
    client: &Client,
    target: &Reference,
    image: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<Digest> {
    push_with(
        store,
        client,
        target,
        image,
        &PushOptions::default(),
        progress,
    )
}

struct Job {
    blob: Digest,
    size: u64,
    media_type: String,
    id: String,
}

/// Pushes the stored image `image` as `target` (see the crate docs); returns the manifest
/// digest and records `target`'s repo digest on the image.
pub fn push_with(
    store: &Store,
    client: &Client,
    target: &Reference,
    image: &str,
    opts: &PushOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Digest> {
    let img = store.image(image)?;
    let mut raw = Vec::new();
    store
        .open_blob(&img.manifest)?
        .read_to_end(&mut raw)
        .map_err(|e| Error::Invalid(format!("reading manifest {}: {e}", img.manifest)))?;
    let manifest = ImageManifest::from_reader(&raw[..])
        .map_err(|e| Error::Invalid(format!("stored manifest {} is invalid: {e}", img.manifest)))?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&raw)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| skiff_registry::OCI_MANIFEST.to_owned());
    progress(Progress::status(format!(
        "The push refers to repository [{}]",
        target.name()
    )));
    // Docker shows layers top first, by diffID.
    let mut jobs = Vec::new();
    for (i, d) in manifest.layers().iter().enumerate().rev() {
        let blob = descriptor_digest(d)?;
        let id = img
            .layers
            .get(i)
            .map_or_else(|| short_id(&blob), |l| short_id(&l.diff_id));
        progress(Progress::layer("Preparing", id.clone()));
        jobs.push(Job {
            blob,
            size: d.size(),
            media_type: d.media_type().to_string(),
            id,
        });
    }
    let workers = opts.max_concurrent_uploads.max(1);
    for j in jobs.iter().skip(workers) {
        progress(Progress::layer("Waiting", j.id.clone()));
    }
    // Repositories of the same registry that have this image's blobs.
    let sources: Vec<String> = img
        .repo_digests
        .iter()
        .filter(|r| r.registry() == target.registry() && r.repository() != target.repository())
        .map(|r| r.repository().to_owned())
        .collect();
    pool::run(
        jobs,
        workers,
        opts.cancel.as_deref(),
        progress,
        |job, ctx| {
            push_layer(store, client, target, &job, &sources, opts, ctx).map_err(|e| match e {
                Error::Cancelled => Error::Cancelled,
                e => Error::Layer {
                    layer: job.blob.clone(),
                    cause: Box::new(e),
                },
            })
        },
    )?;
    // The config, then the manifest as stored.
    let config = descriptor_digest(manifest.config())?;
    if !client.blob_exists(target, &config)? {
        let size = store.blob_size(&config)?;
        let mut f = store.open_blob(&config)?;
        client.push_blob(target, &config, size, &mut f, UploadMode::Monolithic)?;
    }
    let digest = client.put_manifest(target, &media_type, &raw)?;
    let tag = target.tag().unwrap_or("latest").to_owned();
    progress(Progress::status(format!(
        "{tag}: digest: {digest} size: {}",
        raw.len()
    )));
    progress(Progress {
        progress_detail: Some(Default::default()),
        aux: Some(serde_json::json!({"Tag": tag, "Digest": digest.to_string(), "Size": raw.len()})),
        ..Default::default()
    });
    let repo_digest = Reference::parse(&format!("{}@{digest}", target.name()))
        .map_err(|e| Error::Invalid(e.to_string()))?;
    if !img.repo_digests.contains(&repo_digest) {
        store.put_image(&img.manifest, &[], &[repo_digest])?;
    }
    Ok(digest)
}

fn push_layer(
    store: &Store,
    client: &Client,
    target: &Reference,
    job: &Job,
    sources: &[String],
    opts: &PushOptions,
    ctx: &Ctx<'_>,
) -> Result<()> {
    if ctx.aborted() {
        return Err(Error::Cancelled);
    }
    if skiff_registry::is_non_distributable(&job.media_type) {
        ctx.send(Progress::layer("Skipped foreign layer", job.id.clone()));
        return Ok(());
    }
    if client.blob_exists(target, &job.blob)? {
        ctx.send(Progress::layer("Layer already exists", job.id.clone()));
        return Ok(());
    }
    for from in sources {
        if client.mount_blob(target, &job.blob, from)? {
            ctx.send(Progress::layer(
                format!("Mounted from {from}"),
                job.id.clone(),
            ));
            return Ok(());
        }
    }
    let file = store.open_blob(&job.blob)?;
    let mut reader = Upload {
        inner: file,
        ctx,
        id: job.id.clone(),
        total: job.size,
        done: 0,
        last: Instant::now(),
    };
    ctx.send(Progress::bytes("Pushing", job.id.clone(), 0, job.size));
    let mode = if job.size > opts.chunk_threshold {
        UploadMode::Chunked(opts.chunk_size)
    } else {
        UploadMode::Monolithic
    };
    client.push_blob(target, &job.blob, job.size, &mut reader, mode)?;
    ctx.send(Progress::layer("Pushed", job.id.clone()));
    Ok(())
}

struct Upload<'a, 'c, R> {
    inner: R,
    ctx: &'a Ctx<'c>,
    id: String,
    total: u64,
    done: u64,
    last: Instant,
}

impl<R: Read> Read for Upload<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ctx.aborted() {
            return Err(io::Error::other("push abandoned: another layer failed"));
        }
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if n > 0 && self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            self.ctx.send(Progress::bytes(
                "Pushing",
                self.id.clone(),
                self.done,
                self.total,
            ));
        }
        Ok(n)
    }
}
