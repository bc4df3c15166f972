//! `docker cp` (stat, archive, extract), `docker export`, `docker diff` and container sizes.
//!
//! Paths given by clients are resolved inside the container's root with
//! `openat2(RESOLVE_IN_ROOT)` (see [`crate::fs`]); below that, trees are walked by directory fd
//! with `O_NOFOLLOW`, so a container swapping a directory for a symlink mid-walk cannot send
//! the walk to the host. Extraction goes through skiff-unpack's hostile-tar rules beneath the
//! resolved directory.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;
use serde::Serialize;
use tar::{EntryType, Header};

use crate::engine::Engine;
use crate::error::{store_err, Error, Result};
use crate::fs::ContainerFs;

/// `X-Docker-Container-Path-Stat`: what `HEAD /containers/{id}/archive` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits (the docker CLI tests `ModeDir`, `ModeSymlink`...).
    pub mode: u32,
    /// RFC 3339 with nanoseconds.
    pub mtime: String,
    /// For a symlink: its target resolved inside the container, absolute.
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// `PUT /containers/{id}/archive` options.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractOptions {
    /// Refuse to replace a directory with a non-directory or the reverse.
    pub no_overwrite_dir_non_dir: bool,
    /// Give the files the container's user (`Config.User`) instead of the archive's owners.
    pub copy_uid_gid: bool,
}

/// One line of `docker diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    #[serde(rename = "Path")]
    pub path: String,
    /// 0 modified, 1 added, 2 deleted.
    #[serde(rename = "Kind")]
    pub kind: u8,
}

pub const CHANGE_MODIFIED: u8 = 0;
pub const CHANGE_ADDED: u8 = 1;
pub const CHANGE_DELETED: u8 = 2;

// Go's os.FileMode type bits.
const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;
const GO_DEVICE: u32 = 1 << 26;
const GO_PIPE: u32 = 1 << 25;
const GO_SOCKET: u32 = 1 << 24;
const GO_SETUID: u32 = 1 << 23;
const GO_SETGID: u32 = 1 << 22;
const GO_CHAR: u32 = 1 << 21;
const GO_STICKY: u32 = 1 << 20;

/// A `stat` mode as Go's `os.FileMode`.
pub fn go_file_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    if st_mode & 0o4000 != 0 {
        m |= GO_SETUID;
    }
    if st_mode & 0o2000 != 0 {
        m |= GO_SETGID;
    }
    if st_mode & 0o1000 != 0 {
        m |= GO_STICKY;
    }
    m | match FileType::from_raw_mode(st_mode) {
        FileType::Directory => GO_DIR,
        FileType::Symlink => GO_SYMLINK,
        FileType::Fifo => GO_PIPE,
        FileType::Socket => GO_SOCKET,
        FileType::CharacterDevice => GO_DEVICE | GO_CHAR,
        FileType::BlockDevice => GO_DEVICE,
        _ => 0,
    }
}

fn errno(what: impl Into<String>) -> impl FnOnce(Errno) -> Error {
    let what = what.into();
    move |e| Error::Io {
        what,
        source: e.into(),
    }
}

/// A client path cleaned like Docker's `filepath.Join("/", p)`: its components, and whether
/// it ended in `/` or `/.` (then the last symlink is followed and it must be a directory).
#[derive(Debug, PartialEq, Eq)]
struct CleanPath {
    comps: Vec<String>,
    trailing: bool,
    dot: bool,
}

fn clean_path(p: &str) -> CleanPath {
    let mut comps: Vec<String> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                comps.pop();
            }
            c => comps.push(c.to_owned()),
        }
    }
    CleanPath {
        comps,
        trailing: p.ends_with('/') || p.ends_with("/.") || p == ".",
        dot: p.ends_with("/.") || p == ".",
    }
}

impl CleanPath {
    fn abs(&self) -> String {
        format!("/{}", self.comps.join("/"))
    }

    /// The name Docker gives the path's entry (tar root, stat name).
    fn base(&self) -> String {
        if self.dot {
            ".".into()
        } else {
            self.comps.last().cloned().unwrap_or_else(|| "/".into())
        }
    }
}

/// The entry a path names: its parent directory and its name in it, or (followed) the
/// entry itself with an empty name.
struct Located {
    parent: OwnedFd,
    name: Option<String>,
    stat: Stat,
    clean: CleanPath,
}

fn stat_at(dir: BorrowedFd<'_>, name: Option<&str>) -> std::result::Result<Stat, Errno> {
    match name {
        Some(n) => rustix::fs::statat(dir, n, AtFlags::SYMLINK_NOFOLLOW),
        None => rustix::fs::fstat(dir),
    }
}

fn mtime_of(st: &Stat) -> SystemTime {
    let secs = u64::try_from(st.st_mtime).unwrap_or(0);
    let nanos = u32::try_from(st.st_mtime_nsec).unwrap_or(0);
    UNIX_EPOCH + Duration::new(secs, nanos)
}

impl ContainerFs {
    fn locate(&self, path: &str) -> Result<Located> {
        if path.is_empty() {
            return Err(Error::InvalidInput("path cannot be empty".into()));
        }
        let clean = clean_path(path);
        let miss = |e: Errno| match e {
            Errno::NOENT | Errno::NOTDIR | Errno::LOOP => self.not_found(path),
            e => errno(format!("cannot resolve {path}"))(e),
        };
        if clean.trailing || clean.comps.is_empty() {
            let fd = self
                .open(&clean.abs(), OFlags::PATH | OFlags::DIRECTORY)
                .map_err(miss)?;
            let stat = rustix::fs::fstat(&fd).map_err(errno(format!("cannot stat {path}")))?;
            return Ok(Located {
                parent: fd,
                name: None,
                stat,
                clean,
            });
        }
        let parent_path = format!("/{}", clean.comps[..clean.comps.len() - 1].join("/"));
        let parent = self
            .open(&parent_path, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(miss)?;
        let name = clean.comps.last().cloned();
        let stat = stat_at(parent.as_fd(), name.as_deref()).map_err(miss)?;
        Ok(Located {
            parent,
            name,
            stat,
            clean,
        })
    }

    /// `lstat` of a path in the container, as Docker reports it.
    pub fn stat(&self, path: &str) -> Result<PathStat> {
        let loc = self.locate(path)?;
        let mut link_target = String::new();
        if FileType::from_raw_mode(loc.stat.st_mode) == FileType::Symlink {
            link_target = self.resolve_link(&loc.clean.comps);
        }
        Ok(PathStat {
            name: loc.clean.base(),
            size: loc.stat.st_size,
            mode: go_file_mode(loc.stat.st_mode),
            mtime: humantime::format_rfc3339_nanos(mtime_of(&loc.stat)).to_string(),
            link_target,
        })
    }

    /// Follows the symlink chain at `comps` inside the root (lexically, at most 40 links):
    /// the absolute container path it ends at.
    fn resolve_link(&self, comps: &[String]) -> String {
        let mut cur: Vec<String> = comps.to_vec();
        for _ in 0..40 {
            let Some((name, parent)) = cur.split_last() else {
                break;
            };
            let Ok(dir) = self.open(
                &format!("/{}", parent.join("/")),
                OFlags::PATH | OFlags::DIRECTORY,
            ) else {
                break;
            };
            let Ok(target) = rustix::fs::readlinkat(&dir, name.as_str(), Vec::new()) else {
                break;
            };
            let target = String::from_utf8_lossy(target.to_bytes()).into_owned();
            let joined = if target.starts_with('/') {
                target
            } else {
                format!("/{}/{target}", parent.join("/"))
            };
            cur = clean_path(&joined).comps;
        }
        format!("/{}", cur.join("/"))
    }

    /// `GET /containers/{id}/archive`: a tar of the path, its top entry named after the
    /// path's base name (`.` for `dir/.`), written to `out`.
    pub fn archive(&self, path: &str, out: impl Write) -> Result<()> {
        let loc = self.locate(path)?;
        // The root itself is named `.`: a tar entry never starts with `/`.
        let base = if loc.clean.comps.is_empty() {
            ".".to_owned()
        } else {
            loc.clean.base()
        };
        let mut w = TarWriter::new(out, None);
        w.add(loc.parent.as_fd(), loc.name.as_deref(), base.as_bytes())?;
        w.finish()
    }

    /// `docker export`: the whole root filesystem (run with [`crate::fs::View::Rootfs`]), not
    /// descending into anything mounted on it.
    pub fn export(&self, out: impl Write) -> Result<()> {
        let root = self
            .open("/", OFlags::PATH | OFlags::DIRECTORY)
            .map_err(errno("cannot open the root"))?;
        let dev = rustix::fs::fstat(&root)
            .map_err(errno("cannot stat the root"))?
            .st_dev;
        let mut w = TarWriter::new(out, Some(dev));
        w.add(root.as_fd(), None, b"")?;
        w.finish()
    }

    /// `PUT /containers/{id}/archive`: extracts a tar (plain or compressed) into the
    /// directory `path`.
    pub fn extract(&self, path: &str, input: impl Read + Send, opts: ExtractOptions) -> Result<()> {
        if path.is_empty() {
            return Err(Error::InvalidInput("path cannot be empty".into()));
        }
        let clean = clean_path(path);
        let dir = match self.open(&clean.abs(), OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::NOTDIR) if self.open(&clean.abs(), OFlags::PATH).is_ok() => {
                return Err(Error::InvalidInput(
                    "extraction point is not a directory".into(),
                ))
            }
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Err(self.not_found(path)),
            Err(e) => return Err(errno(format!("cannot resolve {path}"))(e)),
        };
        if self.rec.host_config.readonly_rootfs == Some(true) {
            let st = rustix::fs::fstat(&dir).map_err(errno("cannot stat the destination"))?;
            let root = rustix::fs::fstat(self.root()).map_err(errno("cannot stat the root"))?;
            if st.st_dev == root.st_dev {
                return Err(Error::InvalidInput(
                    "container rootfs is marked read-only".into(),
                ));
            }
        }
        let owner = if opts.copy_uid_gid {
            self.container_user()?
        } else {
            None
        };
        let uopts = skiff_unpack::Options {
            preserve_ownership: true,
            preserve_xattrs: true,
            whiteouts: false,
            no_overwrite_dir_non_dir: opts.no_overwrite_dir_non_dir,
            owner,
            diff_id: false,
        };
        skiff_unpack::unpack_at(input, skiff_unpack::Compression::Detect, dir, &uopts)
            .map(drop)
            .map_err(|e| unpack_error(e, path))
    }

    /// The uid/gid of the container's `Config.User` from its own /etc/passwd and /etc/group
    /// (`None` without a user: the archive's owners stay).
    fn container_user(&self) -> Result<Option<(u32, u32)>> {
        let user = self.rec.config.user.clone().unwrap_or_default();
        if user.is_empty() {
            return Ok(None);
        }
        let read = |p: &str| -> String {
            let Ok(Some((file, _))) = self
                .open(p, OFlags::PATH | OFlags::NOFOLLOW)
                .and_then(reopen_regular)
            else {
                return String::new();
            };
            let mut s = String::new();
            let _ = file.take(4 << 20).read_to_string(&mut s);
            s
        };
        let (name, group) = user.split_once(':').unwrap_or((&user, ""));
        let passwd = read("/etc/passwd");
        let entry = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && (f[0] == name || f[2] == name));
        let (uid, mut gid) = match (entry, name.parse::<u32>()) {
            (Some(f), _) => (f[2].parse().unwrap_or(0), f[3].parse().unwrap_or(0)),
            (None, Ok(n)) => (n, n),
            (None, Err(_)) => {
                return Err(Error::InvalidInput(format!(
                    "unable to find user {name}: no matching entries in passwd file"
                )))
            }
        };
        if !group.is_empty() {
            gid = match group.parse::<u32>() {
                Ok(n) => n,
                Err(_) => read("/etc/group")
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() >= 3 && f[0] == group)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| {
                        Error::InvalidInput(format!(
                            "unable to find group {group}: no matching entries in group file"
                        ))
                    })?,
            };
        }
        Ok(Some((uid, gid)))
    }
}

/// Opens for reading the regular file that the `O_PATH` fd `fd` names, through procfs, so
/// that nothing but a regular file is ever opened: a device node or fifo a container put in
/// its place is never opened by the daemon (opening a device can have effects, and reading
/// one from the host would bypass the container's device rules).
fn reopen_regular(fd: OwnedFd) -> std::result::Result<Option<(File, Stat)>, Errno> {
    use std::os::fd::AsRawFd;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let file = rustix::fs::open(
        path.as_str(),
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // The magic link reopens the same inode; checked again all the same.
    let again = rustix::fs::fstat(&file)?;
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
        return Ok(None);
    }
    Ok(Some((File::from(file), again)))
}

fn unpack_error(e: skiff_unpack::Error, path: &str) -> Error {
    use skiff_unpack::Error as U;
    let text = chain_text(&e);
    match &e {
        U::Fs { source, .. } if source.raw_os_error() == Some(libc_erofs()) => Error::InvalidInput(
            format!("cannot write into {path}: mounted volume is marked read-only ({text})"),
        ),
        U::Dest { .. } | U::Fs { .. } => Error::Internal(format!("extracting into {path}: {text}")),
        _ => Error::InvalidInput(format!("extracting into {path}: {text}")),
    }
}

fn chain_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn libc_erofs() -> i32 {
    Errno::ROFS.raw_os_error()
}

/// Writes tar entries from directory fds. Names are written verbatim (`./a` stays `./a`, as
/// Docker's clients rebase on it), long ones with GNU long-name records.
struct TarWriter<W: Write> {
    out: W,
    /// (dev, ino) of files with several links → the first name written.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// Do not descend into directories of another device (export).
    one_fs: Option<u64>,
    /// Write overlay whiteouts (0/0 devices, opaque directories) as OCI `.wh.` entries.
    oci_whiteouts: bool,
    /// Tar names (no trailing `/`) left out with everything below them.
    skip: Vec<Vec<u8>>,
}

const BLOCK: usize = 512;

fn join_name(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        return name.to_vec();
    }
    let mut v = prefix.to_vec();
    if !v.ends_with(b"/") {
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

impl<W: Write> TarWriter<W> {
    fn new(out: W, one_fs: Option<u64>) -> Self {
        TarWriter {
            out,
            links: HashMap::new(),
            one_fs,
            oci_whiteouts: false,
            skip: Vec::new(),
        }
    }

    fn io(e: io::Error) -> Error {
        Error::Io {
            what: "writing the archive".into(),
            source: e,
        }
    }

    /// A GNU `././@LongLink` record carrying a name too long for the header.
    fn long(&mut self, kind: EntryType, value: &[u8]) -> Result<()> {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        {
            let old = h.as_old_mut();
            old.name[..13].copy_from_slice(b"././@LongLink");
        }
        h.set_mode(0o644);
        h.set_size(value.len() as u64 + 1);
        h.set_cksum();
        self.out.write_all(h.as_bytes()).map_err(Self::io)?;
        let mut data = value.to_vec();
        data.push(0);
        data.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
        self.out.write_all(&data).map_err(Self::io)
    }

    fn header(
        &mut self,
        mut h: Header,
        name: &[u8],
        link: Option<&[u8]>,
        data: Option<(&mut dyn Read, u64)>,
    ) -> Result<()> {
        if name.len() > 100 {
            self.long(EntryType::GNULongName, name)?;
        }
        if let Some(l) = link.filter(|l| l.len() > 100) {
            self.long(EntryType::GNULongLink, l)?;
        }
        {
            let old = h.as_old_mut();
            let n = name.len().min(100);
            old.name = [0; 100];
            old.name[..n].copy_from_slice(&name[..n]);
            if let Some(l) = link {
                let n = l.len().min(100);
                old.linkname = [0; 100];
                old.linkname[..n].copy_from_slice(&l[..n]);
            }
        }
        let size = data.as_ref().map_or(0, |d| d.1);
        h.set_size(size);
        h.set_cksum();
        self.out.write_all(h.as_bytes()).map_err(Self::io)?;
        if let Some((r, size)) = data {
            // Exactly `size` bytes even if the file changed meanwhile (short: zero-padded).
            let mut limited = r.take(size).chain(io::repeat(0)).take(size);
            io::copy(&mut limited, &mut self.out).map_err(Self::io)?;
            let pad = usize::try_from(size % BLOCK as u64).unwrap_or(0);
            if pad != 0 {
                self.out
                    .write_all(&[0u8; BLOCK][..BLOCK - pad])
                    .map_err(Self::io)?;
            }
        }
        Ok(())
    }

    fn base_header(st: &Stat, kind: EntryType) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(u64::from(st.st_uid));
        h.set_gid(u64::from(st.st_gid));
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h
    }

    /// Adds the entry `name` of `parent` (`None`: `parent` itself, a directory) as
    /// `tar_name`, and everything below it. An empty `tar_name` adds only the content.
    fn add(&mut self, parent: BorrowedFd<'_>, name: Option<&str>, tar_name: &[u8]) -> Result<()> {
        let os_name = name.map(OsStr::new);
        self.add_os(parent, os_name, tar_name)
    }

    fn add_os(
        &mut self,
        parent: BorrowedFd<'_>,
        name: Option<&OsStr>,
        tar_name: &[u8],
    ) -> Result<()> {
        if self.skip.iter().any(|p| p == tar_name) {
            return Ok(());
        }
        let st = match name {
            Some(n) => rustix::fs::statat(parent, n, AtFlags::SYMLINK_NOFOLLOW),
            None => rustix::fs::fstat(parent),
        };
        let st = match st {
            Ok(st) => st,
            // Gone meanwhile: like a file deleted before the walk reached it.
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(errno("cannot stat an entry to archive")(e)),
        };
        let open = |flags: OFlags| -> std::result::Result<OwnedFd, Errno> {
            match name {
                Some(n) => rustix::fs::openat(
                    parent,
                    n,
                    flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ),
                None => rustix::fs::openat(parent, ".", flags | OFlags::CLOEXEC, Mode::empty()),
            }
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let dir = match open(OFlags::RDONLY | OFlags::DIRECTORY) {
                    Ok(d) => d,
                    Err(Errno::NOENT) => return Ok(()),
                    Err(e) => return Err(errno("cannot open a directory to archive")(e)),
                };
                let st = rustix::fs::fstat(&dir).map_err(errno("cannot stat a directory"))?;
                if !tar_name.is_empty() {
                    let mut n = tar_name.to_vec();
                    if !n.ends_with(b"/") {
                        n.push(b'/');
                    }
                    self.header(Self::base_header(&st, EntryType::Directory), &n, None, None)?;
                }
                if self.one_fs.is_some_and(|dev| dev != st.st_dev) {
                    return Ok(());
                }
                if self.oci_whiteouts
                    && matches!(
                        rustix::fs::fgetxattr(&dir, "trusted.overlay.opaque", &mut [0u8; 4]),
                        Ok(1)
                    )
                {
                    let h = Self::base_header(&st, EntryType::Regular);
                    self.header(h, &join_name(tar_name, b".wh..wh..opq"), None, None)?;
                }
                let mut names = BTreeSet::new();
                for item in
                    rustix::fs::Dir::read_from(&dir).map_err(errno("cannot list a directory"))?
                {
                    let item = item.map_err(errno("cannot list a directory"))?;
                    let n = item.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        names.insert(n.to_vec());
                    }
                }
                for n in names {
                    let child = join_name(tar_name, &n);
                    self.add_os(dir.as_fd(), Some(OsStr::from_bytes(&n)), &child)?;
                }
                Ok(())
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key).cloned() {
                        let h = Self::base_header(&st, EntryType::Link);
                        return self.header(h, tar_name, Some(&first), None);
                    }
                    self.links.insert(key, tar_name.to_vec());
                }
                let fd = match open(OFlags::PATH) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => return Ok(()),
                    Err(e) => return Err(errno("cannot open a file to archive")(e)),
                };
                let (mut file, st) = match reopen_regular(fd) {
                    Ok(Some(f)) => f,
                    // Replaced meanwhile by something that is not a regular file.
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(errno("cannot open a file to archive")(e)),
                };
                let size = u64::try_from(st.st_size).unwrap_or(0);
                let h = Self::base_header(&st, EntryType::Regular);
                self.header(h, tar_name, None, Some((&mut file, size)))
            }
            FileType::Symlink => {
                let Some(n) = name else { return Ok(()) };
                let target = match rustix::fs::readlinkat(parent, n, Vec::new()) {
                    Ok(t) => t,
                    Err(Errno::NOENT | Errno::INVAL) => return Ok(()),
                    Err(e) => return Err(errno("cannot read a symlink")(e)),
                };
                let h = Self::base_header(&st, EntryType::Symlink);
                self.header(h, tar_name, Some(target.to_bytes()), None)
            }
            FileType::CharacterDevice if self.oci_whiteouts && st.st_rdev == 0 => {
                let (dir, base) = match tar_name.iter().rposition(|b| *b == b'/') {
                    Some(i) => (&tar_name[..i], &tar_name[i + 1..]),
                    None => (&b""[..], tar_name),
                };
                let mut wh = b".wh.".to_vec();
                wh.extend_from_slice(base);
                let mut h = Self::base_header(&st, EntryType::Regular);
                h.set_mode(0o600);
                self.header(h, &join_name(dir, &wh), None, None)
            }
            kind @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
                let entry = match kind {
                    FileType::CharacterDevice => EntryType::Char,
                    FileType::BlockDevice => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                let mut h = Self::base_header(&st, entry);
                if entry != EntryType::Fifo {
                    let _ = h.set_device_major(rustix::fs::major(st.st_rdev));
                    let _ = h.set_device_minor(rustix::fs::minor(st.st_rdev));
                }
                self.header(h, tar_name, None, None)
            }
            // Sockets (and anything else) are not archived, as with Docker.
            _ => Ok(()),
        }
    }

    fn finish(mut self) -> Result<()> {
        self.out.write_all(&[0u8; BLOCK * 2]).map_err(Self::io)?;
        self.out.flush().map_err(Self::io)
    }
}

/// Paths the engine itself puts into every container (mount points made at start): not the
/// container's changes, as Docker keeps them in an init layer.
const ENGINE_PATHS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/.dockerenv",
    "/sbin/docker-init",
];

struct Lower {
    layers: Vec<OwnedFd>,
}

impl Lower {
    /// The entry at `rel` (no leading `/`) in the image under the container, if any.
    fn stat(&self, rel: &str) -> Option<Stat> {
        for l in &self.layers {
            let fd = rustix::fs::openat2(
                l,
                rel,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            );
            match fd {
                Ok(fd) => {
                    let st = rustix::fs::fstat(&fd).ok()?;
                    return (!is_whiteout(&st)).then_some(st);
                }
                Err(_) => continue,
            }
        }
        None
    }
}

fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

struct DiffWalk<'a> {
    lower: Lower,
    ignore: &'a [String],
    out: Vec<Change>,
}

impl DiffWalk<'_> {
    /// Walks the upper directory `dir` (container path `path`); true if anything below was
    /// reported.
    fn walk(&mut self, dir: BorrowedFd<'_>, path: &str) -> Result<bool> {
        let mut names = BTreeSet::new();
        for item in rustix::fs::Dir::read_from(dir).map_err(errno("cannot list the upper dir"))? {
            let item = item.map_err(errno("cannot list the upper dir"))?;
            let n = item.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.insert(String::from_utf8_lossy(n).into_owned());
            }
        }
        let mut any = false;
        for n in names {
            let p = format!("{path}/{n}");
            if self.ignore.contains(&p) {
                continue;
            }
            let Ok(st) = rustix::fs::statat(dir, n.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            if is_whiteout(&st) {
                self.push(&p, CHANGE_DELETED);
                any = true;
                continue;
            }
            let lower = self.lower.stat(p.trim_start_matches('/'));
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let Ok(sub) = rustix::fs::openat(
                    dir,
                    n.as_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) else {
                    continue;
                };
                let at = self.out.len();
                let below = self.walk(sub.as_fd(), &p)?;
                let opaque = matches!(
                    rustix::fs::fgetxattr(&sub, "trusted.overlay.opaque", &mut [0u8; 4]),
                    Ok(1)
                );
                // A directory made only to hold an engine mount point (/etc for /etc/hosts
                // in an image without /etc) is not the container's change either.
                let holder = !below && {
                    let prefix = format!("{p}/");
                    self.ignore.iter().any(|i| i.starts_with(&prefix))
                };
                let kind = match lower {
                    None if holder => None,
                    None => Some(CHANGE_ADDED),
                    Some(l) if below || opaque || meta_differs(&l, &st) => Some(CHANGE_MODIFIED),
                    Some(_) => None,
                };
                if let Some(k) = kind {
                    self.out.insert(
                        at,
                        Change {
                            path: p.clone(),
                            kind: k,
                        },
                    );
                    any = true;
                }
            } else {
                self.push(
                    &p,
                    if lower.is_some() {
                        CHANGE_MODIFIED
                    } else {
                        CHANGE_ADDED
                    },
                );
                any = true;
            }
        }
        Ok(any)
    }

    fn push(&mut self, path: &str, kind: u8) {
        self.out.push(Change {
            path: path.to_owned(),
            kind,
        });
    }
}

fn meta_differs(a: &Stat, b: &Stat) -> bool {
    a.st_mode != b.st_mode || a.st_uid != b.st_uid || a.st_gid != b.st_gid
}

/// Bytes of the non-directory entries below `dir` (hard links once), as Docker's SizeRw.
fn tree_size(dir: BorrowedFd<'_>, seen: &mut BTreeSet<(u64, u64)>) -> u64 {
    let Ok(items) = rustix::fs::Dir::read_from(dir) else {
        return 0;
    };
    let mut total = 0u64;
    for item in items.flatten() {
        let n = item.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        let name = OsStr::from_bytes(n);
        let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            if let Ok(sub) = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                total += tree_size(sub.as_fd(), seen);
            }
        } else if st.st_nlink <= 1 || seen.insert((st.st_dev, st.st_ino)) {
            total += u64::try_from(st.st_size).unwrap_or(0);
        }
    }
    total
}

fn open_dir(p: &std::path::Path) -> Result<OwnedFd> {
    rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno(format!("cannot open {}", p.display())))
}

impl Engine {
    /// `docker diff`: the container's changes to its image, from its overlay upper dir
    /// (whiteouts are deletions), sorted by path. The engine's own mount points (/etc/hosts,
    /// /dev, /proc...) are left out, as Docker keeps them in an init layer; volume mount
    /// points the container got are changes, as with Docker.
    pub fn changes(&self, name_or_id: &str) -> Result<Vec<Change>> {
        let rec = self.record(name_or_id)?;
        let store = &self.config().store;
        let h = store
            .rootfs(&rec.id)
            .map_err(store_err(format!("cannot find the rootfs of {}", rec.id)))?;
        let Some(upper) = h.upper else {
            return Err(Error::InvalidInput(
                "docker diff needs the overlay storage driver (this store uses vfs)".into(),
            ));
        };
        let layers = store
            .rootfs_layers(&rec.id)
            .map_err(store_err("cannot find the image layers"))?
            .iter()
            .map(|s| {
                rustix::fs::open(
                    &s.path,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno(format!("cannot open {}", s.path.display())))
            })
            .collect::<Result<Vec<_>>>()?;
        let ignore: Vec<String> = ENGINE_PATHS.iter().map(|s| (*s).to_owned()).collect();
        let mut walk = DiffWalk {
            lower: Lower { layers },
            ignore: &ignore,
            out: Vec::new(),
        };
        let top = open_dir(&upper)?;
        walk.walk(top.as_fd(), "")?;
        let mut out = walk.out;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// `docker commit`: the container's changes (its upper dir) as a layer tar with OCI
    /// whiteouts, written to `out`. The engine's mount points are left out, as with
    /// `docker diff`.
    pub fn commit_layer(&self, name_or_id: &str, out: impl Write) -> Result<()> {
        let rec = self.record(name_or_id)?;
        let h = self
            .config()
            .store
            .rootfs(&rec.id)
            .map_err(store_err(format!("cannot find the rootfs of {}", rec.id)))?;
        let Some(upper) = h.upper else {
            return Err(Error::InvalidInput(
                "docker commit needs the overlay storage driver (this store uses vfs)".into(),
            ));
        };
        let mut w = TarWriter::new(out, None);
        w.oci_whiteouts = true;
        w.skip = ENGINE_PATHS
            .iter()
            .map(|p| p.trim_start_matches('/').as_bytes().to_vec())
            .collect();
        let top = open_dir(&upper)?;
        w.add(top.as_fd(), None, b"")?;
        w.finish()
    }

    /// (SizeRw, SizeRootFs): the bytes of the container's own files (its upper dir; the
    /// whole copy with vfs) and that plus its image's.
    pub fn size(&self, name_or_id: &str) -> Result<(i64, i64)> {
        let rec = self.record(name_or_id)?;
        let store = &self.config().store;
        let h = store
            .rootfs(&rec.id)
            .map_err(store_err(format!("cannot find the rootfs of {}", rec.id)))?;
        let image: u64 = store
            .rootfs_layers(&rec.id)
            .map(|l| l.iter().map(|s| s.size).sum())
            .unwrap_or(0);
        let rw = match &h.upper {
            Some(upper) => {
                let dir = open_dir(upper)?;
                tree_size(dir.as_fd(), &mut BTreeSet::new())
            }
            None => {
                let dir = open_dir(&h.path)?;
                tree_size(dir.as_fd(), &mut BTreeSet::new()).saturating_sub(image)
            }
        };
        let rw = i64::try_from(rw).unwrap_or(i64::MAX);
        let img = i64::try_from(image).unwrap_or(i64::MAX);
        Ok((rw, rw.saturating_add(img)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_clean_like_docker() {
        let c = clean_path("/etc/../../x/./y/");
        assert_eq!(c.comps, vec!["x", "y"]);
        assert!(c.trailing && !c.dot);
        assert_eq!(c.base(), "y");
        let c = clean_path("dir/.");
        assert_eq!(
            (c.abs().as_str(), c.base().as_str(), c.dot),
            ("/dir", ".", true)
        );
        assert_eq!(clean_path("/").base(), "/");
        assert_eq!(clean_path("../../..").abs(), "/");
    }

    #[test]
    fn modes_are_go_file_modes() {
        assert_eq!(go_file_mode(0o100644), 0o644);
        assert_eq!(go_file_mode(0o040755), GO_DIR | 0o755);
        assert_eq!(go_file_mode(0o120777), GO_SYMLINK | 0o777);
        assert_eq!(go_file_mode(0o020666), GO_DEVICE | GO_CHAR | 0o666);
        assert_eq!(go_file_mode(0o104755), GO_SETUID | 0o755);
        assert_eq!(go_file_mode(0o041777), GO_DIR | GO_STICKY | 0o777);
    }

    #[test]
    fn only_regular_files_are_ever_opened_for_reading() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"data").unwrap();
        let root = open_dir(dir.path()).unwrap();
        rustix::fs::mknodat(&root, "fifo", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("link")).unwrap();
        let path_fd = |n: &str| {
            rustix::fs::openat(
                &root,
                n,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .unwrap()
        };
        // A fifo opened for reading would block: it is not opened at all.
        assert!(reopen_regular(path_fd("fifo")).unwrap().is_none());
        assert!(reopen_regular(path_fd("link")).unwrap().is_none());
        let (mut f, st) = reopen_regular(path_fd("f")).unwrap().unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!((s.as_str(), st.st_size), ("data", 4));
    }

    #[test]
    fn tar_names_are_written_verbatim_and_long_ones_as_gnu_records() {
        let dir = tempfile::tempdir().unwrap();
        let long = "n".repeat(150);
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d").join("a.txt"), b"hello").unwrap();
        std::fs::write(dir.path().join("d").join(&long), b"").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("d").join("l")).unwrap();
        let root = open_dir(dir.path()).unwrap();
        let mut buf = Vec::new();
        let mut w = TarWriter::new(&mut buf, None);
        w.add(root.as_fd(), Some("d"), b".").unwrap();
        w.finish().unwrap();
        let mut ar = tar::Archive::new(&buf[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let raw = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            seen.push((raw, e.header().entry_type(), link));
        }
        assert_eq!(seen[0], ("./".into(), EntryType::Directory, None));
        assert_eq!(seen[1], ("./a.txt".into(), EntryType::Regular, None));
        assert_eq!(
            seen[2],
            ("./l".into(), EntryType::Symlink, Some("/etc/passwd".into()))
        );
        assert_eq!(seen[3].0, format!("./{long}"));
        assert_eq!(seen.len(), 4);
    }
}
