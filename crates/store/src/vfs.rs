//! The vfs driver: applies snapshot directories (overlayfs form) one after the other into a
//! plain directory, as the kernel's overlay would show them merged.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};

use crate::error::{io_err, Result};
use crate::fsutil::remove_any;

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(_) => None,
    }
}

pub(crate) fn xattrs(path: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).unwrap_or("");
        if name.is_empty() || name.starts_with("trusted.overlay.") {
            continue;
        }
        let mut buf = vec![0u8; 64 * 1024];
        if let Ok(k) = rustix::fs::lgetxattr(path, name, &mut buf) {
            buf.truncate(k);
            out.push((name.into(), buf));
        }
    }
    out
}

/// Owner, xattrs, mode, times of `src` onto `dst` (in that order: chown clears setuid).
fn copy_meta(src: &Path, dst: &Path, m: &fs::Metadata) -> Result<()> {
    let is_link = m.file_type().is_symlink();
    rustix::fs::chownat(
        CWD,
        dst,
        Some(rustix::process::Uid::from_raw(m.uid())),
        Some(rustix::process::Gid::from_raw(m.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_err("chown", dst)(e.into()))?;
    for (name, value) in xattrs(src) {
        rustix::fs::lsetxattr(dst, name.as_os_str(), &value, XattrFlags::empty())
            .map_err(|e| io_err("setting an xattr on", dst)(e.into()))?;
    }
    if !is_link {
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io_err("chmod", dst))?;
    }
    let ts = |s: i64, ns: i64| Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    rustix::fs::utimensat(
        CWD,
        dst,
        &Timestamps {
            last_access: ts(m.atime(), m.atime_nsec()),
            last_modification: ts(m.mtime(), m.mtime_nsec()),
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_err("setting the times of", dst)(e.into()))?;
    Ok(())
}

/// Applies one snapshot directory onto `dst`: whiteouts delete, opaque directories hide
/// what was below, everything else replaces; owners, modes, xattrs, times and hard links
/// are kept.
pub(crate) fn apply(src: &Path, dst: &Path) -> Result<()> {
    let mut links = HashMap::new();
    let m = fs::symlink_metadata(src).map_err(io_err("reading", src))?;
    walk(src, dst, &mut links)?;
    copy_meta(src, dst, &m)
}

fn clear_dir(dir: &Path) -> Result<()> {
    for e in fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let e = e.map_err(io_err("listing", dir))?;
        remove_any(&e.path())?;
    }
    Ok(())
}

fn walk(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), std::path::PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(io_err("listing", src))?
        .collect::<io::Result<_>>()
        .map_err(io_err("listing", src))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name: &OsStr = &e.file_name();
        let s = src.join(name);
        let d = dst.join(name);
        let m = fs::symlink_metadata(&s).map_err(io_err("reading", &s))?;
        let ft = m.file_type();
        let existing = fs::symlink_metadata(&d).ok();
        if ft.is_char_device() && m.rdev() == 0 {
            // A whiteout: the name is gone.
            remove_any(&d)?;
            continue;
        }
        if ft.is_dir() {
            match existing {
                Some(x) if x.is_dir() => {
                    if lgetxattr(&s, OPAQUE_XATTR).as_deref() == Some(b"y") {
                        clear_dir(&d)?;
                    }
                }
                Some(_) => {
                    remove_any(&d)?;
                    fs::create_dir(&d).map_err(io_err("creating", &d))?;
                }
                None => fs::create_dir(&d).map_err(io_err("creating", &d))?,
            }
            walk(&s, &d, links)?;
            copy_meta(&s, &d, &m)?;
            continue;
        }
        if existing.is_some() {
            remove_any(&d)?;
        }
        if m.nlink() > 1 {
            if let Some(first) = links.get(&(m.dev(), m.ino())) {
                fs::hard_link(first, &d).map_err(io_err("hard-linking", &d))?;
                continue;
            }
            links.insert((m.dev(), m.ino()), d.clone());
        }
        if ft.is_file() {
            fs::copy(&s, &d).map_err(io_err("copying to", &d))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&s).map_err(io_err("reading the link", &s))?;
            std::os::unix::fs::symlink(&target, &d).map_err(io_err("creating the symlink", &d))?;
        } else {
            let kind = FileType::from_raw_mode(m.mode());
            rustix::fs::mknodat(
                CWD,
                &d,
                kind,
                Mode::from_raw_mode(m.mode() & 0o7777),
                m.rdev(),
            )
            .map_err(|e| io_err("creating the node", &d)(e.into()))?;
        }
        copy_meta(&s, &d, &m)?;
    }
    Ok(())
}
