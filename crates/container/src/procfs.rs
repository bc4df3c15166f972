//! Writes to /proc that the runtime itself makes, checked to really land on procfs
//! (CVE-2025-52881: a container could otherwise redirect them).

use std::io::Write;
use std::os::fd::AsFd;

use crate::error::{Context, Error, Result};

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Opens `path` for writing with O_NOFOLLOW and checks the fs magic before writing `value`.
pub fn write(path: &str, value: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ctx(|| format!("cannot open {path}"))?;
    let st = nix::sys::statfs::fstatfs(f.as_fd()).ctx(|| format!("cannot statfs {path}"))?;
    if st.filesystem_type().0 != PROC_SUPER_MAGIC {
        return Err(Error::Other(format!(
            "{path} is not on procfs; refusing to write to it"
        )));
    }
    f.write_all(value.as_bytes())
        .ctx(|| format!("cannot write {value:?} to {path}"))
}
