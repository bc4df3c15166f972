//! Layer snapshots: one directory per layer, keyed by the layer's chain ID, shared by every
//! image that has the layer.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use skiff_reference::{Algorithm, Digest};
use skiff_unpack::Compression;

use crate::error::{io_err, Error, Result};
use crate::fsutil::{self, sha256, sync_dir, write_atomic};
use crate::Store;

/// The OCI chain ID of a layer: its diffID for the bottom layer, else
/// `sha256(parent chain ID + " " + diffID)`.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => sha256(format!("{p} {diff_id}").as_bytes()),
    }
}

/// The chain IDs of a stack of layers given bottom first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let c = chain_id(out.last(), d);
        out.push(c);
    }
    out
}

/// The short name of a snapshot's link in `l/`: 26 characters of base32 (like overlay2's),
/// derived from the chain ID so it is the same after a crash or on another node.
pub(crate) fn link_name(chain_id: &Digest) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let h = sha256(format!("skiff-link {chain_id}").as_bytes());
    let bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&h.hex()[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    let mut out = String::with_capacity(26);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// One unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The layer's chain ID (the snapshot's key).
    pub chain_id: Digest,
    /// The layer's diffID (sha256 of its uncompressed tar).
    pub diff_id: Digest,
    /// The chain ID of the layer below, if any.
    pub parent: Option<Digest>,
    /// Bytes of the files in the snapshot (hard links counted once).
    pub size: u64,
    /// Bytes of the uncompressed layer tar.
    pub tar_size: u64,
    /// Short link name in `l/`.
    pub link: String,
    /// The unpacked directory (`snapshots/<hex>/diff`).
    #[serde(skip)]
    pub path: PathBuf,
    /// Whether this call unpacked it (false: it existed, or a concurrent unpack won).
    #[serde(skip)]
    pub created: bool,
}

/// Sum of the sizes of the regular files below `dir`, each inode once.
pub(crate) fn dir_size(dir: &std::path::Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))) {
                total += m.len();
            }
        }
    }
    total
}

impl Store {
    fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        self.path("snapshots").join(chain_id.hex())
    }

    /// Looks up a snapshot by chain ID (and makes sure its short link exists).
    pub fn snapshot(&self, chain_id: &Digest) -> Result<Snapshot> {
        let dir = self.snapshot_dir(chain_id);
        let meta = dir.join("meta.json");
        let data = match fs::read(&meta) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::SnapshotNotFound(chain_id.to_string()))
            }
            Err(e) => return Err(io_err("reading", &meta)(e)),
        };
        let mut snap: Snapshot = serde_json::from_slice(&data).map_err(|source| Error::Json {
            what: meta.display().to_string(),
            source,
        })?;
        snap.path = dir.join("diff");
        self.ensure_link(&snap)?;
        Ok(snap)
    }

    /// Whether a snapshot exists.
    pub fn has_snapshot(&self, chain_id: &Digest) -> bool {
        self.snapshot_dir(chain_id).join("meta.json").is_file()
    }

    fn ensure_link(&self, snap: &Snapshot) -> Result<()> {
        let link = self.path("l").join(&snap.link);
        if fs::symlink_metadata(&link).is_ok() {
            return Ok(());
        }
        let target = format!("../snapshots/{}/diff", snap.chain_id.hex());
        match std::os::unix::fs::symlink(&target, &link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io_err("creating link", &link)(e)),
        }
    }

    /// Unpacks one layer into its snapshot, unless it exists already (then `reader` is not
    /// read at all and the existing snapshot is returned with `created: false`).
    ///
    /// The layer goes into a temp dir first; its diffID (sha256 of the uncompressed stream)
    /// must equal `diff_id`, otherwise nothing is kept. The temp dir is then renamed into
    /// place: when several threads or pulls unpack the same layer at once, one rename wins
    /// and the others discard their copy. Safe to call from several threads at once.
    pub fn unpack_layer(
        &self,
        parent: Option<&Digest>,
        diff_id: &Digest,
        reader: impl Read + Send,
        compression: Compression,
    ) -> Result<Snapshot> {
        if diff_id.algorithm() != Algorithm::Sha256 {
            return Err(Error::Invalid(format!(
                "layer diffID {diff_id} is not a sha256 digest"
            )));
        }
        let chain = chain_id(parent, diff_id);
        if self.has_snapshot(&chain) {
            return self.snapshot(&chain);
        }
        let tmp_root = self.path("snapshots/tmp");
        let tmp = tempfile::Builder::new()
            .prefix("unpack-")
            .tempdir_in(&tmp_root)
            .map_err(io_err("creating a temp dir in", &tmp_root))?;
        let _active = self.activate(tmp.path().to_owned());
        let diff = tmp.path().join("diff");
        fs::create_dir(&diff).map_err(io_err("creating", &diff))?;
        // The snapshot's top directory is the container's `/`.
        fs::set_permissions(&diff, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io_err("chmod", &diff))?;
        let stats = skiff_unpack::unpack(reader, compression, &diff, &self.inner.opts.unpack)
            .map_err(|source| Error::Unpack {
                layer: diff_id.to_string(),
                source,
            })?;
        if stats.diff_id != diff_id.to_string() {
            return Err(Error::DigestMismatch {
                what: "layer diffID (sha256 of the uncompressed tar)".into(),
                expected: diff_id.to_string(),
                actual: stats.diff_id,
            });
        }
        let mut snap = Snapshot {
            chain_id: chain.clone(),
            diff_id: diff_id.clone(),
            parent: parent.cloned(),
            size: dir_size(&diff),
            tar_size: stats.bytes,
            link: link_name(&chain),
            path: PathBuf::new(),
            created: true,
        };
        let json = serde_json::to_vec_pretty(&snap).map_err(|source| Error::Json {
            what: "snapshot metadata".into(),
            source,
        })?;
        write_atomic(&tmp.path().join("meta.json"), &json)?;
        // Make the unpacked files durable before the snapshot becomes visible.
        let fd = fs::File::open(tmp.path()).map_err(io_err("opening", tmp.path()))?;
        rustix::fs::syncfs(&fd)
            .map_err(|e| io_err("syncing the file system of", tmp.path())(e.into()))?;
        let dest = self.snapshot_dir(&chain);
        match fs::rename(tmp.path(), &dest) {
            Ok(()) => {
                let _ = tmp.keep();
                sync_dir(&self.path("snapshots"))?;
                tracing::debug!(chain = %chain, diff_id = %diff_id, entries = stats.entries, "layer unpacked");
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ENOTEMPTY | nix::libc::EEXIST)
                ) =>
            {
                tracing::debug!(chain = %chain, "layer unpacked concurrently, discarding this copy");
                drop(tmp);
                snap = self.snapshot(&chain)?;
                return Ok(snap);
            }
            Err(e) => return Err(io_err("renaming a snapshot to", &dest)(e)),
        }
        snap.path = dest.join("diff");
        self.ensure_link(&snap)?;
        Ok(snap)
    }

    /// Removes a snapshot: renamed out of the way first, so a crash never leaves a
    /// half-deleted snapshot that looks valid. Returns its size.
    pub(crate) fn delete_snapshot(&self, chain_id: &Digest) -> Result<u64> {
        let dir = self.snapshot_dir(chain_id);
        let size = self.snapshot(chain_id).map(|s| s.size).unwrap_or(0);
        let trash = self
            .path("snapshots/tmp")
            .join(format!("gc-{}", chain_id.hex()));
        fsutil::remove_any(&trash)?;
        match fs::rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("renaming", &dir)(e)),
        }
        fsutil::remove_any(&self.path("l").join(link_name(chain_id)))?;
        fsutil::remove_any(&trash)?;
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let b = Digest::parse(&format!("sha256:{}", "b".repeat(64))).unwrap();
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256(format!("{a} {b}").as_bytes()));
        // Computed independently: sha256("sha256:aaa… sha256:bbb…").
        assert_eq!(
            ids[1].hex(),
            "ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c"
        );
        assert_eq!(chain_id(Some(&ids[0]), &b), ids[1]);
    }

    #[test]
    fn link_names_are_short_and_stable() {
        let a = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let b = Digest::parse(&format!("sha256:{}", "b".repeat(64))).unwrap();
        assert_eq!(link_name(&a).len(), 26);
        assert_eq!(link_name(&a), link_name(&a));
        assert_ne!(link_name(&a), link_name(&b));
        assert!(link_name(&a)
            .bytes()
            .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c)));
    }
}
