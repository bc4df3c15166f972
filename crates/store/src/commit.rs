//! `docker commit`: a new image made of an image's layers plus one more layer (a
//! container's changes, with OCI whiteouts) and a new run config.

use std::io::{self, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use skiff_reference::{Algorithm, Reference};
use skiff_unpack::Compression;

use crate::error::{io_err, Error, Result};
use crate::fsutil::Hasher;
use crate::image::Image;
use crate::tarball::rfc3339;
use crate::Store;

/// Settings of [`Store::commit`].
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The tag to give the new image (none: a dangling image).
    pub tag: Option<Reference>,
    /// The image's run config (the `config` object: `Cmd`, `Env`, `Labels`...).
    pub config: Value,
    /// The history comment (`--message`).
    pub comment: Option<String>,
    /// The author (`--author`).
    pub author: Option<String>,
    /// The history's `created_by`.
    pub created_by: String,
}

struct Hashing<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Store {
    /// Makes an image of `parent`'s layers plus `layer` (a plain tar stream with OCI
    /// whiteouts), stored gzip-compressed and unpacked into its snapshot, with `opts.config`
    /// as run config and a history entry for it. Returns the new image.
    pub fn commit(&self, parent: &str, layer: impl Read, opts: &CommitOptions) -> Result<Image> {
        let lease = self.lease();
        let base = self.image(parent)?;
        lease.protect_blob(&base.id);
        let mut config: Value = serde_json::from_slice(&self.raw_config(&base.id.to_string())?)
            .map_err(|e| {
                Error::Invalid(format!("the config of image {} is not JSON: {e}", base.id))
            })?;

        let blob = self.blob_writer(None)?;
        // Level 1: a commit is interactive; the layer is gzip'd once and unpacked at once.
        let gz = flate2::write::GzEncoder::new(blob, flate2::Compression::fast());
        let mut tee = Hashing {
            inner: gz,
            hasher: Hasher::new(Algorithm::Sha256),
        };
        let mut layer = layer;
        io::copy(&mut layer, &mut tee).map_err(io_err(
            "compressing the committed layer into",
            self.path("content/tmp"),
        ))?;
        let diff_id = tee.hasher.finish();
        let blob = tee.inner.finish().map_err(io_err(
            "compressing the committed layer into",
            self.path("content/tmp"),
        ))?;
        let layer_digest = blob.commit()?;
        lease.protect_blob(&layer_digest);
        let layer_size = self.blob_size(&layer_digest)?;
        let parent_chain = base.layers.last().map(|l| l.chain_id.clone());
        let chain = crate::chain_id(parent_chain.as_ref(), &diff_id);
        lease.protect_snapshot(&chain);
        self.unpack_layer(
            parent_chain.as_ref(),
            &diff_id,
            self.open_blob(&layer_digest)?,
            Compression::Gzip,
        )?;

        let created = rfc3339(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        config["created"] = json!(created);
        config["config"] = opts.config.clone();
        if let Some(a) = &opts.author {
            config["author"] = json!(a);
        }
        if !config["rootfs"]["diff_ids"].is_array() {
            config["rootfs"] = json!({"type": "layers", "diff_ids": []});
        }
        if let Some(ids) = config["rootfs"]["diff_ids"].as_array_mut() {
            ids.push(json!(diff_id.to_string()));
        }
        let mut entry = json!({"created": created, "created_by": opts.created_by});
        if let Some(c) = &opts.comment {
            entry["comment"] = json!(c);
        }
        if let Some(a) = &opts.author {
            entry["author"] = json!(a);
        }
        match config["history"].as_array_mut() {
            Some(h) => h.push(entry),
            None => config["history"] = json!([entry]),
        }
        let config = serde_json::to_vec(&config)
            .map_err(|e| Error::Invalid(format!("encoding the committed config: {e}")))?;
        let config_digest = self.put_bytes(&config)?;
        lease.protect_blob(&config_digest);

        let mut layers: Vec<Value> = base
            .layers
            .iter()
            .map(|l| json!({"mediaType": l.media_type, "digest": l.blob.to_string(), "size": l.blob_size}))
            .collect();
        layers.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest.to_string(),
            "size": layer_size,
        }));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.to_string(),
                "size": config.len(),
            },
            "layers": layers,
        });
        let manifest = serde_json::to_vec(&manifest)
            .map_err(|e| Error::Invalid(format!("encoding the committed manifest: {e}")))?;
        let manifest_digest = self.put_bytes(&manifest)?;
        lease.protect_blob(&manifest_digest);
        let tags: Vec<Reference> = opts.tag.iter().cloned().collect();
        let image = self.put_image(&manifest_digest, &tags, &[])?;
        tracing::debug!(image = %image.id, parent = %base.id, layer = %layer_digest, "image committed");
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::{fake_image, store};

    fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn commit_adds_a_layer_a_config_and_history() {
        let (_d, s) = store();
        let m = fake_image(&s, "base");
        let base = s.put_image(&m, &["base:1".parse().unwrap()], &[]).unwrap();
        let layer = tar_with(&[("added.txt", b"new\n"), (".wh.gone", b"")]);
        let opts = CommitOptions {
            tag: Some("committed:1".parse().unwrap()),
            config: json!({"Cmd": ["sh", "-c", "cat /added.txt"], "Env": ["A=1"]}),
            comment: Some("a message".into()),
            author: Some("me".into()),
            created_by: "skiff commit".into(),
        };
        let img = s.commit("base:1", &layer[..], &opts).unwrap();
        assert_eq!(img.layers.len(), base.layers.len() + 1);
        assert_eq!(img.layers[0].chain_id, base.layers[0].chain_id);
        assert_eq!(s.image("committed:1").unwrap().id, img.id);
        let cfg: Value = serde_json::from_slice(&s.raw_config("committed:1").unwrap()).unwrap();
        assert_eq!(cfg["config"]["Cmd"][2], "cat /added.txt");
        assert_eq!(cfg["author"], "me");
        assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        let last = cfg["history"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["comment"], "a message");
        assert_eq!(last["created_by"], "skiff commit");
        let snap = s.snapshot(&img.layers[1].chain_id).unwrap();
        assert_eq!(
            std::fs::read(snap.path.join("added.txt")).unwrap(),
            b"new\n"
        );
        assert!(s.commit("nosuch", &layer[..], &opts).is_err());
    }
}
