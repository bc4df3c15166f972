//! Applies one OCI/Docker image layer (a tar stream, optionally gzip or zstd compressed) to a
//! snapshot directory that will later be an overlayfs lower layer.
//!
//! Every path is resolved relative to a directory fd of the destination with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, and the last component is created with
//! `*at` syscalls relative to its parent's fd: nothing outside the destination is ever touched.
//! A path that would leave the destination (`..` beyond the top, a symlink pointing outside,
//! a hard link to a target outside) is refused with an error naming the entry.
//!
//! Whiteouts are converted to overlayfs form: `.wh.NAME` becomes a 0/0 character device
//! `NAME`, `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory.

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use tar::EntryType;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// How the layer stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (`application/vnd.oci.image.layer.v1.tar+gzip`).
    Gzip,
    /// zstd (`application/vnd.oci.image.layer.v1.tar+zstd`).
    Zstd,
    /// Sniff the magic bytes: gzip `1f 8b`, zstd `28 b5 2f fd`, otherwise plain tar.
    Detect,
}

/// What to apply besides the file contents.
#[derive(Debug, Clone)]
pub struct Options {
    /// Apply the numeric uid/gid of each entry (needs `CAP_CHOWN`). Default: true.
    pub preserve_ownership: bool,
    /// Apply the `SCHILY.xattr.*` PAX records of each entry. Default: true.
    pub preserve_xattrs: bool,
    /// Convert `.wh.` entries to overlayfs whiteouts (an image layer). Off, they are plain
    /// files like any other (`docker cp` into a container). Default: true.
    pub whiteouts: bool,
    /// Refuse to replace an existing directory with a non-directory or the reverse (Docker's
    /// `noOverwriteDirNonDir`). Default: false (the entry replaces what was there).
    pub no_overwrite_dir_non_dir: bool,
    /// Owner given to every entry instead of the entry's own (with `preserve_ownership`).
    pub owner: Option<(u32, u32)>,
    /// Hash the stream for [`Stats::diff_id`] (left empty without). Default: true.
    pub diff_id: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            preserve_ownership: true,
            preserve_xattrs: true,
            whiteouts: true,
            no_overwrite_dir_non_dir: false,
            owner: None,
            diff_id: true,
        }
    }
}

/// What [`unpack`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Tar entries applied (whiteouts included, extension headers not).
    pub entries: u64,
    /// Bytes of the uncompressed tar stream.
    pub bytes: u64,
    /// Whiteouts converted (plain and opaque).
    pub whiteouts: u64,
    /// `sha256:<hex>` of the uncompressed tar stream: compare it with the config's diffID.
    pub diff_id: String,
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the destination directory {path}")]
    Dest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the layer stream failed")]
    Read(#[source] io::Error),
    #[error("the layer stream is not valid zstd")]
    Zstd(#[source] ruzstd::decoding::errors::FrameDecoderError),
    #[error("entry {path}: its path escapes the destination through `..`")]
    PathEscape { path: String },
    #[error("entry {path}: its path goes through a symlink that points outside the destination")]
    SymlinkEscape { path: String },
    #[error("entry {path}: a parent of it is not a directory")]
    NotADirectory { path: String },
    #[error("entry {path}: hard link target {target} escapes the destination")]
    HardlinkEscape { path: String, target: String },
    #[error("entry {path}: hard link target {target} does not exist in this layer")]
    HardlinkTargetMissing { path: String, target: String },
    #[error("entry {path}: {what}")]
    Invalid { path: String, what: String },
    #[error("cannot overwrite {existing} {path:?} with {new}")]
    Overwrite {
        path: String,
        existing: &'static str,
        new: &'static str,
    },
    #[error("entry {path}: entry type {kind:?} is not supported")]
    Unsupported { path: String, kind: EntryType },
    #[error("entry {path}: {op} failed")]
    Fs {
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

fn fs_err<'a>(path: &'a str, op: &'static str) -> impl FnOnce(Errno) -> Error + 'a {
    move |e| Error::Fs {
        path: path.to_owned(),
        op,
        source: e.into(),
    }
}

/// Reads through and hashes the uncompressed stream (the diffID) and counts its bytes.
struct HashingReader<R> {
    inner: R,
    hasher: Option<Sha256>,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Decodes a zstd stream of one or more concatenated frames (as `zstd` and `pzstd` may write).
struct ZstdFrames<R: BufRead> {
    decoder: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = decoder.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // This frame is done; another one may follow.
            let Some(decoder) = self.decoder.take() else {
                return Ok(0);
            };
            let mut inner = decoder.into_inner();
            if inner.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.decoder = Some(
                ruzstd::decoding::StreamingDecoder::new(inner)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
            );
        }
    }
}

/// Wraps `reader` in the decompressor for `compression` (with [`Compression::Detect`], sniffed
/// from the first bytes): the plain tar stream of a layer, for callers that need it without
/// unpacking (hashing, re-compressing, `docker save`).
pub fn decompressor<'a, R: Read + 'a>(
    reader: R,
    compression: Compression,
) -> Result<Box<dyn Read + 'a>, Error> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let compression = match compression {
        Compression::Detect => {
            let head = reader.fill_buf().map_err(Error::Read)?;
            if head.starts_with(&[0x1f, 0x8b]) {
                Compression::Gzip
            } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                Compression::Zstd
            } else {
                Compression::None
            }
        }
        c => c,
    };
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(ZstdFrames {
            decoder: Some(ruzstd::decoding::StreamingDecoder::new(reader).map_err(Error::Zstd)?),
        }),
        Compression::None | Compression::Detect => Box::new(reader),
    })
}

/// Applies one layer tar stream to `dest`, streaming: the layer is never held in memory.
///
/// `dest` must be an existing directory (normally empty: a new snapshot). Directory mtimes
/// are applied at the end, because adding entries changes them. The diffID of the
/// uncompressed stream is returned in [`Stats::diff_id`] for the caller to verify; on error
/// `dest` is left partly written and should be discarded.
pub fn unpack(
    reader: impl Read + Send,
    compression: Compression,
    dest: &Path,
    opts: &Options,
) -> Result<Stats, Error> {
    let root: OwnedFd = rustix::fs::open(
        dest,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Dest {
        path: dest.to_owned(),
        source: e.into(),
    })?;
    unpack_at(reader, compression, root, opts)
}

/// [`unpack`] into the directory `root` is an fd of (for a destination the caller resolved
/// safely itself, such as a path inside a container opened with `RESOLVE_IN_ROOT`). Nothing
/// outside that directory is touched.
pub fn unpack_at(
    reader: impl Read + Send,
    compression: Compression,
    root: OwnedFd,
    opts: &Options,
) -> Result<Stats, Error> {
    // Two stages on two threads: reading (the network, a tee into the content store),
    // decompressing and hashing on one; parsing the tar and making the files on the other.
    // A few chunks in flight bound the memory.
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(PIPELINE_CHUNKS);
        // Used chunks go back to the producer instead of being freed and zeroed again.
        let (back_tx, back_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPELINE_CHUNKS + 2);
        let hash = opts.diff_id;
        let producer = s.spawn(move || produce(reader, compression, hash, &tx, &back_rx));
        let archive = tar::Archive::new(ChannelReader {
            rx,
            back: back_tx,
            cur: Vec::new(),
            pos: 0,
        });
        let mut unpacker = Unpacker {
            root,
            opts,
            dir_times: Vec::new(),
            entries: 0,
            whiteouts: 0,
        };
        let mut apply = |mut archive: tar::Archive<ChannelReader>| -> Result<(), Error> {
            for entry in archive.entries().map_err(Error::Read)? {
                let mut entry = entry.map_err(Error::Read)?;
                unpacker.apply(&mut entry)?;
            }
            unpacker.finish_dir_times()?;
            // The diffID covers the whole stream, including the padding after the
            // end-of-archive blocks that the tar reader does not consume.
            io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(Error::Read)?;
            Ok(())
        };
        // Consumes the archive: its end of the channel closes, which stops the producer if
        // the tar stage stopped early.
        let applied = apply(archive);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(Error::Read(io::Error::other("the layer reader panicked"))));
        // A failed stream explains a failed unpack better than the unpack's own error.
        let (bytes, diff_id) = produced?;
        applied?;
        Ok(Stats {
            entries: unpacker.entries,
            bytes,
            whiteouts: unpacker.whiteouts,
            diff_id,
        })
    })
}

const PIPELINE_CHUNKS: usize = 8;
const PIPELINE_CHUNK: usize = 256 * 1024;

/// The reading stage: decompressed, hashed chunks into `tx` until the end of the stream.
/// Returns the stream's length and `sha256:` digest.
fn produce(
    reader: impl Read,
    compression: Compression,
    hash: bool,
    tx: &std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
    back: &std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<(u64, String), Error> {
    let fail = |tx: &std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>| {
        let _ = tx.send(Err(io::Error::other("the layer stream failed")));
    };
    let inner = match decompressor(reader, compression) {
        Ok(d) => d,
        Err(e) => {
            fail(tx);
            return Err(e);
        }
    };
    let mut hashing = HashingReader {
        inner,
        hasher: hash.then(Sha256::new),
        bytes: 0,
    };
    loop {
        let mut buf = back.try_recv().unwrap_or_default();
        buf.resize(PIPELINE_CHUNK, 0);
        let n = match hashing.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                fail(tx);
                return Err(Error::Read(e));
            }
        };
        buf.truncate(n);
        if tx.send(Ok(buf)).is_err() {
            // The tar stage stopped (its own error is the answer); do not read on.
            return Ok((hashing.bytes, String::new()));
        }
    }
    let digest = hashing
        .hasher
        .map(|h| format!("sha256:{:x}", h.finalize()))
        .unwrap_or_default();
    Ok((hashing.bytes, digest))
}

/// The tar stage's end of the pipeline.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    back: std::sync::mpsc::SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.cur.len() {
                let n = buf.len().min(self.cur.len() - self.pos);
                buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.cur, chunk);
                    if used.capacity() > 0 {
                        let _ = self.back.try_send(used);
                    }
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
    }
}

/// A cleaned relative path: no empty, `.` or `..` components.
type Components = Vec<Vec<u8>>;

/// Cleans an entry path lexically like Docker does (leading `/` stripped, `.` dropped, `..`
/// applied); a `..` that would climb above the top is an error.
fn clean(raw: &[u8], display: &str) -> Result<Components, Error> {
    let mut out: Components = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(Error::PathEscape {
                        path: display.to_owned(),
                    });
                }
            }
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

struct Unpacker<'o> {
    root: OwnedFd,
    opts: &'o Options,
    /// Directories whose mtime is applied at the end, in creation order.
    dir_times: Vec<(Components, Timespec)>,
    entries: u64,
    whiteouts: u64,
}

/// Ownership, mode and times of one entry, with PAX overrides applied.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Timespec,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Unpacker<'_> {
    /// Opens the directory `comps` below the root, with `flags`. With `create`, missing
    /// directories are created 0755 root-owned (as Docker does for implied parents).
    fn open_dir(
        &self,
        comps: &[Vec<u8>],
        flags: OFlags,
        create: bool,
        display: &str,
    ) -> Result<OwnedFd, Error> {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let flags = flags | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let open = |path: &[u8]| {
            let path: &[u8] = if path.is_empty() { b"." } else { path };
            rustix::fs::openat2(&self.root, os(path), flags, Mode::empty(), resolve)
        };
        let map = |e: Errno| match e {
            Errno::XDEV => Error::SymlinkEscape {
                path: display.to_owned(),
            },
            Errno::NOTDIR => Error::NotADirectory {
                path: display.to_owned(),
            },
            e => Error::Fs {
                path: display.to_owned(),
                op: "resolving the parent directory",
                source: e.into(),
            },
        };
        match open(&join(comps)) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            Err(e) => return Err(map(e)),
        }
        // Walk down from the top, creating what is missing.
        let mut parent = open(b"").map_err(map)?;
        for i in 0..comps.len() {
            let prefix = join(&comps[..=i]);
            let fd = match open(&prefix) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&parent, os(&comps[i]), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(fs_err(display, "creating a parent directory")(e)),
                    }
                    open(&prefix).map_err(map)?
                }
                Err(e) => return Err(map(e)),
            };
            parent = fd;
        }
        Ok(parent)
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Error> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let raw_path = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&raw_path).into_owned();
        let comps = clean(&raw_path, &display)?;
        self.entries += 1;
        let Some((name, parent_comps)) = comps.split_last() else {
            // The layer's top directory itself: the snapshot directory keeps its own metadata.
            return Ok(());
        };

        if self.opts.whiteouts && name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(parent_comps, name, &display);
        }
        let mut meta = self.meta(entry, &display)?;
        if let Some((uid, gid)) = self.opts.owner {
            (meta.uid, meta.gid) = (uid, gid);
        }
        let parent = self.open_dir(parent_comps, OFlags::PATH, true, &display)?;
        let name = os(name);

        match kind {
            EntryType::Directory => {
                self.make_dir(&parent, name, &meta, &display)?;
                self.dir_times.push((comps.clone(), meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                self.replace(&parent, name, &display)?;
                let fd = rustix::fs::openat(
                    &parent,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(fs_err(&display, "creating the file"))?;
                let mut file = File::from(fd);
                io::copy(entry, &mut file).map_err(|source| Error::Fs {
                    path: display.clone(),
                    op: "writing the file contents",
                    source,
                })?;
                self.set_meta_fd(file.as_fd(), &meta, &display)?;
                rustix::fs::futimens(&file, &times(meta.mtime))
                    .map_err(fs_err(&display, "setting the mtime"))?;
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| Error::Invalid {
                    path: display.clone(),
                    what: "symlink without a target".into(),
                })?;
                self.replace(&parent, name, &display)?;
                rustix::fs::symlinkat(os(&target), &parent, name)
                    .map_err(fs_err(&display, "creating the symlink"))?;
                if !meta.xattrs.is_empty() {
                    let entry_path = display.as_str();
                    tracing::debug!(path = entry_path, "xattrs on symlinks are not applied");
                }
                self.chown_at(&parent, name, &meta, &display)?;
                rustix::fs::utimensat(&parent, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(fs_err(&display, "setting the mtime"))?;
            }
            EntryType::Link => {
                let raw_target = entry
                    .link_name_bytes()
                    .map(Cow::into_owned)
                    .ok_or_else(|| Error::Invalid {
                        path: display.clone(),
                        what: "hard link without a target".into(),
                    })?;
                self.hardlink(&parent, name, &comps, &raw_target, &display)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (file_type, dev) = match kind {
                    EntryType::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let header = entry.header();
                        let bad = |_| Error::Invalid {
                            path: display.clone(),
                            what: "unreadable device numbers".into(),
                        };
                        let major = header.device_major().map_err(bad)?.unwrap_or(0);
                        let minor = header.device_minor().map_err(bad)?.unwrap_or(0);
                        let ft = if kind == EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ft, rustix::fs::makedev(major, minor))
                    }
                };
                self.replace(&parent, name, &display)?;
                rustix::fs::mknodat(&parent, name, file_type, Mode::from_raw_mode(0o600), dev)
                    .map_err(fs_err(&display, "creating the device node"))?;
                self.chown_at(&parent, name, &meta, &display)?;
                // The node was just created by us and is not a symlink, so following is safe.
                rustix::fs::chmodat(
                    &parent,
                    name,
                    Mode::from_raw_mode(meta.mode),
                    AtFlags::empty(),
                )
                .map_err(fs_err(&display, "setting the mode"))?;
                if !meta.xattrs.is_empty() {
                    let entry_path = display.as_str();
                    tracing::debug!(
                        path = entry_path,
                        "xattrs on device nodes and fifos are not applied"
                    );
                }
                rustix::fs::utimensat(&parent, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(fs_err(&display, "setting the mtime"))?;
            }
            kind => {
                return Err(Error::Unsupported {
                    path: display,
                    kind,
                })
            }
        }
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, display: &str) -> Result<Meta, Error> {
        let header = entry.header();
        let invalid = |what: &str| Error::Invalid {
            path: display.to_owned(),
            what: what.to_owned(),
        };
        let mode = header.mode().map_err(|_| invalid("unreadable mode"))? & 0o7777;
        let mut uid = header.uid().map_err(|_| invalid("unreadable uid"))?;
        let mut gid = header.gid().map_err(|_| invalid("unreadable gid"))?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(header.mtime().map_err(|_| invalid("unreadable mtime"))?)
                .map_err(|_| invalid("mtime out of range"))?,
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        if let Some(pax) = entry
            .pax_extensions()
            .map_err(|_| invalid("unreadable PAX header"))?
        {
            for ext in pax {
                let ext = ext.map_err(|_| invalid("malformed PAX record"))?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let number = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .ok_or_else(|| invalid(&format!("malformed PAX {key}")))
                };
                match key {
                    "uid" => uid = number()?,
                    "gid" => gid = number()?,
                    "mtime" => {
                        mtime =
                            parse_pax_time(value).ok_or_else(|| invalid("malformed PAX mtime"))?
                    }
                    k if k.starts_with(PAX_XATTR_PREFIX) => {
                        xattrs.push((k[PAX_XATTR_PREFIX.len()..].to_owned(), value.to_vec()));
                    }
                    _ => {}
                }
            }
        }
        Ok(Meta {
            uid: u32::try_from(uid).map_err(|_| invalid("uid out of range"))?,
            gid: u32::try_from(gid).map_err(|_| invalid("gid out of range"))?,
            mode,
            mtime,
            xattrs,
        })
    }

    fn make_dir(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        display: &str,
    ) -> Result<(), Error> {
        let mut opaque = false;
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
            Ok(_) if self.opts.no_overwrite_dir_non_dir => {
                return Err(Error::Overwrite {
                    path: display.to_owned(),
                    existing: "non-directory",
                    new: "a directory",
                })
            }
            Ok(st) => {
                // A whiteout of this layer, then a directory of the same name: the directory
                // replaces the lower one, so it must not show the lower one's content.
                opaque = self.opts.whiteouts && is_whiteout(&st);
                remove_existing(parent, name, display)?;
                mkdir(parent, name, display)?;
            }
            Err(Errno::NOENT) => mkdir(parent, name, display)?,
            Err(e) => return Err(fs_err(display, "inspecting the existing entry")(e)),
        }
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(fs_err(display, "opening the directory"))?;
        if opaque {
            rustix::fs::fsetxattr(&fd, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(fs_err(display, "setting trusted.overlay.opaque"))?;
        }
        self.set_meta_fd(fd.as_fd(), meta, display)
    }

    /// chown, then chmod (chown clears setuid/setgid), then xattrs (chown also clears
    /// `security.capability`).
    fn set_meta_fd(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        meta: &Meta,
        display: &str,
    ) -> Result<(), Error> {
        if self.opts.preserve_ownership {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
            )
            .map_err(fs_err(display, "setting the owner"))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))
            .map_err(fs_err(display, "setting the mode"))?;
        if self.opts.preserve_xattrs {
            for (key, value) in &meta.xattrs {
                match rustix::fs::fsetxattr(fd, key.as_str(), value, XattrFlags::empty()) {
                    Ok(()) => {}
                    Err(e) if key == "security.selinux" => {
                        let entry_path = display;
                        tracing::debug!(path = entry_path, error = %e, "ignoring security.selinux");
                    }
                    Err(e) => {
                        return Err(Error::Fs {
                            path: display.to_owned(),
                            op: "setting an xattr",
                            source: e.into(),
                        })
                    }
                }
            }
        }
        Ok(())
    }

    fn chown_at(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        display: &str,
    ) -> Result<(), Error> {
        if !self.opts.preserve_ownership {
            return Ok(());
        }
        rustix::fs::chownat(
            parent,
            name,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(fs_err(display, "setting the owner"))
    }

    fn hardlink(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        comps: &[Vec<u8>],
        raw_target: &[u8],
        display: &str,
    ) -> Result<(), Error> {
        let target_display = String::from_utf8_lossy(raw_target).into_owned();
        let escape = || Error::HardlinkEscape {
            path: display.to_owned(),
            target: target_display.clone(),
        };
        let target = clean(raw_target, display).map_err(|_| escape())?;
        let Some((target_name, target_parent)) = target.split_last() else {
            return Err(escape());
        };
        if target == comps {
            return Err(Error::Invalid {
                path: display.to_owned(),
                what: "hard link to itself".into(),
            });
        }
        let missing = || Error::HardlinkTargetMissing {
            path: display.to_owned(),
            target: target_display.clone(),
        };
        let tparent = match self.open_dir(target_parent, OFlags::PATH, false, display) {
            Ok(fd) => fd,
            Err(Error::SymlinkEscape { .. }) => return Err(escape()),
            Err(_) => return Err(missing()),
        };
        let tname = os(target_name);
        match rustix::fs::statat(&tparent, tname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(Error::Invalid {
                    path: display.to_owned(),
                    what: format!("hard link target {target_display} is a directory"),
                })
            }
            Ok(_) => {}
            Err(Errno::NOENT) => return Err(missing()),
            Err(e) => return Err(fs_err(display, "inspecting the hard link target")(e)),
        }
        self.replace(parent, name, display)?;
        // Without AT_SYMLINK_FOLLOW, a symlink target is linked itself, never followed.
        rustix::fs::linkat(&tparent, tname, parent, name, AtFlags::empty())
            .map_err(fs_err(display, "creating the hard link"))
    }

    fn whiteout(
        &mut self,
        parent_comps: &[Vec<u8>],
        name: &[u8],
        display: &str,
    ) -> Result<(), Error> {
        self.whiteouts += 1;
        if name == OPAQUE_WHITEOUT {
            let dir = self.open_dir(parent_comps, OFlags::RDONLY, true, display)?;
            return rustix::fs::fsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(fs_err(display, "setting trusted.overlay.opaque"));
        }
        let hidden = &name[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty()
            || hidden == b"."
            || hidden == b".."
            || hidden.starts_with(WHITEOUT_PREFIX)
        {
            return Err(Error::Invalid {
                path: display.to_owned(),
                what: "whiteout for an invalid name".into(),
            });
        }
        let parent = self.open_dir(parent_comps, OFlags::PATH, true, display)?;
        let hidden = os(hidden);
        // A whiteout only hides lower layers: an entry of this layer with the same name stays
        // (it already hides the lower one; a directory must hide the lower one's content).
        match rustix::fs::statat(&parent, hidden, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => {}
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                let dir = rustix::fs::openat(
                    &parent,
                    hidden,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(fs_err(display, "opening the directory it hides"))?;
                return rustix::fs::fsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
                    .map_err(fs_err(display, "setting trusted.overlay.opaque"));
            }
            Ok(_) => return Ok(()),
            Err(e) => return Err(fs_err(display, "inspecting the entry it hides")(e)),
        }
        rustix::fs::mknodat(
            &parent,
            hidden,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(fs_err(display, "creating the whiteout device"))
    }

    /// Removes what is in the way of a new non-directory entry (refused for a directory
    /// with `no_overwrite_dir_non_dir`).
    fn replace(&self, parent: &OwnedFd, name: &OsStr, display: &str) -> Result<(), Error> {
        if self.opts.no_overwrite_dir_non_dir {
            if let Ok(st) = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    return Err(Error::Overwrite {
                        path: display.to_owned(),
                        existing: "directory",
                        new: "a non-directory",
                    });
                }
            }
        }
        remove_existing(parent, name, display)
    }

    fn finish_dir_times(&mut self) -> Result<(), Error> {
        // Deepest-last order of creation: children were created after parents, so walking
        // backwards sets children before their parents (which does not change parents' mtime).
        for (comps, mtime) in self.dir_times.iter().rev() {
            let Some((name, parent_comps)) = comps.split_last() else {
                continue;
            };
            let display = String::from_utf8_lossy(&join(comps)).into_owned();
            let parent = match self.open_dir(parent_comps, OFlags::PATH, false, &display) {
                Ok(fd) => fd,
                // Replaced or removed by a later entry.
                Err(_) => continue,
            };
            match rustix::fs::utimensat(
                &parent,
                os(name),
                &times(*mtime),
                AtFlags::SYMLINK_NOFOLLOW,
            ) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(fs_err(&display, "setting the directory mtime")(e)),
            }
        }
        Ok(())
    }
}

fn times(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}

/// PAX times are decimal seconds with an optional fraction (`1700000000.123456789`).
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec = secs.parse::<i64>().ok()?;
    let mut nanos = 0i64;
    for (i, c) in frac.chars().take(9).enumerate() {
        let d = i64::from(c.to_digit(10)?);
        nanos += d * 10i64.pow(8 - u32::try_from(i).ok()?);
    }
    Some(Timespec {
        tv_sec,
        tv_nsec: if tv_sec < 0 { -nanos } else { nanos },
    })
}

/// An overlayfs whiteout: a 0/0 character device.
fn is_whiteout(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

fn mkdir(parent: &OwnedFd, name: &OsStr, display: &str) -> Result<(), Error> {
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
        .map_err(fs_err(display, "creating the directory"))
}

/// Removes whatever is at `parent/name` (a directory recursively), if anything.
fn remove_existing(parent: &OwnedFd, name: &OsStr, display: &str) -> Result<(), Error> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            remove_dir_all(parent, name, display)
        }
        Ok(_) => rustix::fs::unlinkat(parent, name, AtFlags::empty())
            .map_err(fs_err(display, "removing the existing entry")),
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(fs_err(display, "inspecting the existing entry")(e)),
    }
}

fn remove_dir_all(parent: &OwnedFd, name: &OsStr, display: &str) -> Result<(), Error> {
    let dir = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(fs_err(display, "opening a directory to replace"))?;
    let mut names = Vec::new();
    for item in rustix::fs::Dir::read_from(&dir)
        .map_err(fs_err(display, "listing a directory to replace"))?
    {
        let item = item.map_err(fs_err(display, "listing a directory to replace"))?;
        let n = item.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    for n in names {
        remove_existing(&dir, os(&n), display)?;
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
        .map_err(fs_err(display, "removing a directory to replace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(raw: &str) -> Result<String, Error> {
        clean(raw.as_bytes(), raw).map(|c| String::from_utf8(join(&c)).unwrap())
    }

    #[test]
    fn clean_strips_root_and_dots() {
        assert_eq!(cleaned("/etc/passwd").unwrap(), "etc/passwd");
        assert_eq!(cleaned("./a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(cleaned("a/b/../c").unwrap(), "a/c");
        assert_eq!(cleaned("/../").ok(), None);
        assert_eq!(cleaned("./").unwrap(), "");
    }

    #[test]
    fn clean_refuses_escapes() {
        for raw in ["..", "../x", "a/../../x", "/a/b/../../../x"] {
            assert!(
                matches!(cleaned(raw), Err(Error::PathEscape { .. })),
                "{raw}"
            );
        }
    }

    #[test]
    fn pax_times() {
        let t = parse_pax_time(b"1700000000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 500_000_000));
        let t = parse_pax_time(b"12").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        let t = parse_pax_time(b"1.1234567899999").unwrap();
        assert_eq!(t.tv_nsec, 123_456_789);
        assert!(parse_pax_time(b"x").is_none());
        assert!(parse_pax_time(b"1.x").is_none());
        assert!(parse_pax_time(b"99999999999999999999").is_none());
    }
}
