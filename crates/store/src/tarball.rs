//! `docker export` (a container's merged filesystem as a tar stream) and `docker import`
//! (a tar stream as a new single-layer image).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::{
    Arch, Config, DescriptorBuilder, HistoryBuilder, ImageConfigurationBuilder,
    ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use skiff_reference::{Algorithm, Digest, Reference};
use skiff_unpack::Compression;

use crate::error::{io_err, Error, Result};
use crate::fsutil::Hasher;
use crate::image::Image;
use crate::Store;

/// Settings of [`Store::import`] (`docker import` flags).
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The tag to give the new image (`--` none: a dangling image).
    pub tag: Option<Reference>,
    /// The image's run config (`--change` applied by the caller).
    pub config: Option<Config>,
    /// The history comment (`--message`).
    pub message: Option<String>,
    /// The architecture, default the host's (`amd64`, `arm64`, ...).
    pub architecture: Option<String>,
}

/// The OCI name of the host architecture.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        a => a,
    }
}

/// RFC 3339 UTC time of `secs` since the epoch.
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn oci<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::Invalid(format!("building the {what} failed: {e}"))
}

pub(crate) fn oci_digest(d: &Digest) -> Result<oci_spec::image::Digest> {
    d.to_string().parse().map_err(oci("digest"))
}

/// Tees the uncompressed stream into a hash.
struct HashWriter<W> {
    inner: W,
    hasher: Hasher,
    bytes: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Store {
    /// Writes the merged root filesystem of a container as a tar stream (`docker export`).
    /// An overlay rootfs that is not mounted is mounted for the export and unmounted after.
    pub fn export_rootfs(&self, container_id: &str, out: impl Write) -> Result<()> {
        let was_mounted = self.is_rootfs_mounted(container_id)?;
        let path = self.mount_rootfs(container_id)?;
        let res = write_tree(&path, out);
        if !was_mounted {
            self.unmount_rootfs(container_id)?;
        }
        res
    }

    /// Makes a single-layer image from a tar stream (`docker import`): the layer is stored
    /// gzip-compressed, unpacked into its snapshot, and described by a new OCI config and
    /// manifest. Returns the new image (tagged `opts.tag` if given).
    pub fn import(
        &self,
        reader: impl Read,
        compression: Compression,
        opts: &ImportOptions,
    ) -> Result<Image> {
        let lease = self.lease();
        let mut plain =
            skiff_unpack::decompressor(reader, compression).map_err(|source| Error::Unpack {
                layer: "import stream".into(),
                source,
            })?;
        let blob = self.blob_writer(None)?;
        let gz = flate2::write::GzEncoder::new(blob, flate2::Compression::new(6));
        let mut tee = HashWriter {
            inner: gz,
            hasher: Hasher::new(Algorithm::Sha256),
            bytes: 0,
        };
        io::copy(&mut plain, &mut tee).map_err(io_err(
            "compressing the imported layer into",
            self.path("content/tmp"),
        ))?;
        let diff_id = tee.hasher.finish();
        let blob = tee.inner.finish().map_err(io_err(
            "compressing the imported layer into",
            self.path("content/tmp"),
        ))?;
        let layer_digest = blob.commit()?;
        lease.protect_blob(&layer_digest);
        let layer_size = self.blob_size(&layer_digest)?;
        lease.protect_snapshot(&diff_id);
        self.unpack_layer(
            None,
            &diff_id,
            self.open_blob(&layer_digest)?,
            Compression::Gzip,
        )?;

        let created = rfc3339(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        let mut history = HistoryBuilder::default()
            .created(created.clone())
            .created_by("skiff import");
        if let Some(m) = &opts.message {
            history = history.comment(m.clone());
        }
        let mut config = ImageConfigurationBuilder::default()
            .created(created)
            .architecture(Arch::from(
                opts.architecture.as_deref().unwrap_or(host_arch()),
            ))
            .os(Os::from("linux"))
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![diff_id.to_string()])
                    .build()
                    .map_err(oci("rootfs"))?,
            )
            .history(vec![history.build().map_err(oci("history"))?]);
        if let Some(c) = &opts.config {
            config = config.config(c.clone());
        }
        let config = config.build().map_err(oci("config"))?;
        let config = config.to_string().map_err(oci("config"))?;
        let config_digest = self.put_bytes(config.as_bytes())?;
        lease.protect_blob(&config_digest);
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(
                DescriptorBuilder::default()
                    .media_type(MediaType::ImageConfig)
                    .digest(oci_digest(&config_digest)?)
                    .size(config.len() as u64)
                    .build()
                    .map_err(oci("config descriptor"))?,
            )
            .layers(vec![DescriptorBuilder::default()
                .media_type(MediaType::ImageLayerGzip)
                .digest(oci_digest(&layer_digest)?)
                .size(layer_size)
                .build()
                .map_err(oci("layer descriptor"))?])
            .build()
            .map_err(oci("manifest"))?;
        let manifest = manifest.to_string().map_err(oci("manifest"))?;
        let manifest_digest = self.put_bytes(manifest.as_bytes())?;
        lease.protect_blob(&manifest_digest);
        let tags: Vec<Reference> = opts.tag.iter().cloned().collect();
        let image = self.put_image(&manifest_digest, &tags, &[])?;
        tracing::debug!(image = %image.id, layer = %layer_digest, "image imported");
        Ok(image)
    }
}

/// Writes the tree under `root` as a tar stream: owners, modes, mtimes, xattrs (PAX
/// `SCHILY.xattr.*`), symlinks, hard links (same inode: a link entry to the first name),
/// devices and fifos.
pub(crate) fn write_tree(root: &Path, out: impl Write) -> Result<()> {
    let mut b = tar::Builder::new(out);
    let mut links = std::collections::HashMap::new();
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(io_err("listing", &dir))?
            .collect::<io::Result<_>>()
            .map_err(io_err("listing", &dir))?;
        entries.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
        for e in entries {
            let name = rel.join(e.file_name());
            let path = root.join(&name);
            let m = fs::symlink_metadata(&path).map_err(io_err("reading", &path))?;
            let ft = m.file_type();
            if ft.is_char_device() && m.rdev() == 0 {
                continue; // a whiteout (only in an unmerged directory)
            }
            let mut h = tar::Header::new_gnu();
            h.set_metadata_in_mode(&m, tar::HeaderMode::Complete);
            let werr = io_err("writing the tar entry for", path.clone());
            let linked = m.nlink() > 1 && !ft.is_dir() && links.contains_key(&(m.dev(), m.ino()));
            let xattrs = if linked {
                Vec::new()
            } else {
                crate::vfs::xattrs(&path)
            };
            if !xattrs.is_empty() {
                let pax: Vec<(String, &[u8])> = xattrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{}", k.to_string_lossy()), &v[..]))
                    .collect();
                b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
                    .map_err(io_err("writing the tar entry for", path.clone()))?;
            }
            if ft.is_dir() {
                h.set_size(0);
                b.append_data(&mut h, &name, io::empty()).map_err(werr)?;
                stack.push(name);
            } else if m.nlink() > 1 && !ft.is_dir() {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, &name, first).map_err(werr)?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), name.clone());
                append_one(&mut b, &mut h, &name, &path, &m).map_err(werr)?;
            } else {
                append_one(&mut b, &mut h, &name, &path, &m).map_err(werr)?;
            }
        }
    }
    b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err("finishing the tar stream of", root))?;
    Ok(())
}

fn append_one<W: Write>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &Path,
    path: &Path,
    m: &fs::Metadata,
) -> io::Result<()> {
    let ft = m.file_type();
    if ft.is_file() {
        b.append_data(h, name, fs::File::open(path)?)
    } else if ft.is_symlink() {
        h.set_size(0);
        b.append_link(h, name, fs::read_link(path)?)
    } else {
        if ft.is_char_device() || ft.is_block_device() {
            let dev = m.rdev();
            let num = |n: u64| u32::try_from(n).map_err(io::Error::other);
            h.set_device_major(num(nix::sys::stat::major(dev))?)?;
            h.set_device_minor(num(nix::sys::stat::minor(dev))?)?;
        }
        h.set_size(0);
        b.append_data(h, name, io::empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
