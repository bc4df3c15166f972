//! A local volume driver (`<data_root>/volumes/<name>/_data`) and the resolution of a create
//! request's `Binds`, `Mounts`, `Tmpfs` and the image's `VOLUME`s into mount points.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bollard_stubs::models::{HostConfig, MountPoint, MountPointTypeEnum, MountTypeEnum};

use crate::error::{io_err, Error, Result};

/// The local volumes under `<data_root>/volumes`.
#[derive(Debug, Clone)]
pub struct Volumes {
    root: PathBuf,
}

/// A volume name: Docker's rule.
fn check_name(name: &str) -> Result<()> {
    crate::names::validate(name)
        .map(|_| ())
        .map_err(|_| Error::InvalidInput(format!("invalid volume name {name:?}")))
}

impl Volumes {
    pub fn new(root: PathBuf) -> Volumes {
        Volumes { root }
    }

    /// The directory a volume's data lives in.
    pub fn data(&self, name: &str) -> PathBuf {
        self.root.join(name).join("_data")
    }

    /// Creates a volume unless it exists; returns its data dir and whether it is new.
    pub fn ensure(&self, name: &str) -> Result<(PathBuf, bool)> {
        check_name(name)?;
        let data = self.data(name);
        if data.is_dir() {
            return Ok((data, false));
        }
        std::fs::create_dir_all(&data)
            .map_err(io_err(format!("cannot create volume {}", data.display())))?;
        let _ = std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755));
        Ok((data, true))
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let dir = self.root.join(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("cannot remove volume {}", dir.display()))(e)),
        }
    }

    /// The names of all volumes.
    pub fn list(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }
}

/// A path inside the rootfs, or None if a component is a symlink (never followed: an image
/// must not point the engine at host files).
fn inside(rootfs: &Path, dest: &str) -> Option<PathBuf> {
    let mut p = rootfs.to_path_buf();
    for comp in dest.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if comp == ".." {
            return None;
        }
        p.push(comp);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => return None,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    Some(p)
}

/// Copies what the image has at `dest` into a new volume (Docker's copy-up), with modes and
/// owners; symlinks are copied as symlinks.
pub fn copy_up(rootfs: &Path, dest: &str, data: &Path) -> Result<()> {
    let Some(src) = inside(rootfs, dest) else {
        return Ok(());
    };
    if !src.is_dir() {
        return Ok(());
    }
    let md = std::fs::metadata(&src).map_err(io_err(format!("cannot stat {}", src.display())))?;
    let _ = std::fs::set_permissions(data, std::fs::Permissions::from_mode(md.mode() & 0o7777));
    let _ = std::os::unix::fs::lchown(data, Some(md.uid()), Some(md.gid()));
    copy_tree(&src, data)
}

fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    for e in std::fs::read_dir(src).map_err(io_err(format!("cannot list {}", src.display())))? {
        let e = e.map_err(io_err(format!("cannot list {}", src.display())))?;
        let from = e.path();
        let to = dst.join(e.file_name());
        let md = std::fs::symlink_metadata(&from)
            .map_err(io_err(format!("cannot stat {}", from.display())))?;
        let ft = md.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(&from)
                .map_err(io_err(format!("cannot read {}", from.display())))?;
            std::os::unix::fs::symlink(target, &to)
                .map_err(io_err(format!("cannot create {}", to.display())))?;
        } else if ft.is_dir() {
            std::fs::create_dir(&to).map_err(io_err(format!("cannot create {}", to.display())))?;
            copy_tree(&from, &to)?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))
                .map_err(io_err(format!("cannot chmod {}", to.display())))?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(io_err(format!("cannot copy {}", from.display())))?;
        } else {
            continue;
        }
        let _ = std::os::unix::fs::lchown(&to, Some(md.uid()), Some(md.gid()));
    }
    Ok(())
}

fn clean_dest(d: &str) -> Result<String> {
    if !d.starts_with('/') {
        return Err(Error::InvalidInput(format!(
            "invalid mount config: mount path must be absolute: {d:?}"
        )));
    }
    let parts: Vec<&str> = d
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(Error::InvalidInput(format!("invalid mount path {d:?}")));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The mounts of a create request, resolved; volumes are created (and filled from the image
/// when new) on the way. Returns the mount points and the anonymous volumes made.
///
/// `rootfs` mounts the container's root filesystem and returns where: it is only called
/// when a new volume is to be filled from the image (most creates never mount anything).
pub fn resolve(
    vols: &Volumes,
    rootfs: &dyn Fn() -> Result<PathBuf>,
    hc: &HostConfig,
    image_volumes: &[String],
) -> Result<(Vec<MountPoint>, Vec<String>)> {
    let mut out: Vec<MountPoint> = Vec::new();
    let mut anon = Vec::new();
    let mut seen = HashSet::new();
    let volume = |name: &str, dest: &str, rw: bool, no_copy: bool| -> Result<MountPoint> {
        let (data, new) = vols.ensure(name)?;
        if new && !no_copy {
            copy_up(&rootfs()?, dest, &data)?;
        }
        Ok(MountPoint {
            typ: Some(MountPointTypeEnum::VOLUME),
            name: Some(name.to_string()),
            source: Some(data.display().to_string()),
            destination: Some(dest.to_string()),
            driver: Some("local".into()),
            mode: Some(if rw { "z" } else { "ro" }.into()),
            rw: Some(rw),
            propagation: Some(String::new()),
        })
    };
    for b in hc.binds.iter().flatten() {
        let parts: Vec<&str> = b.split(':').collect();
        let (src, dest, opts) = match parts.as_slice() {
            [s, d] => (*s, *d, ""),
            [s, d, o] => (*s, *d, *o),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "invalid volume specification: {b:?}"
                )))
            }
        };
        let dest = clean_dest(dest)?;
        let mut rw = true;
        let mut prop = String::new();
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => rw = false,
                "rw" => rw = true,
                "z" | "Z" | "nocopy" | "consistent" | "cached" | "delegated" => {}
                "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                    prop = o.to_string()
                }
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "invalid mode {o:?} in volume specification {b:?}"
                    )))
                }
            }
        }
        if !seen.insert(dest.clone()) {
            return Err(Error::InvalidInput(format!(
                "duplicate mount point: {dest}"
            )));
        }
        if src.starts_with('/') {
            // `-v` creates a missing host directory, as Docker does.
            if !Path::new(src).exists() {
                std::fs::create_dir_all(src)
                    .map_err(io_err(format!("cannot create bind source {src}")))?;
            }
            out.push(MountPoint {
                typ: Some(MountPointTypeEnum::BIND),
                name: None,
                source: Some(src.to_string()),
                destination: Some(dest),
                driver: None,
                mode: Some(opts.to_string()),
                rw: Some(rw),
                propagation: Some(if prop.is_empty() {
                    "rprivate".into()
                } else {
                    prop
                }),
            });
        } else {
            out.push(volume(src, &dest, rw, opts.contains("nocopy"))?);
        }
    }
    for m in hc.mounts.iter().flatten() {
        let dest = clean_dest(m.target.as_deref().unwrap_or(""))?;
        if !seen.insert(dest.clone()) {
            return Err(Error::InvalidInput(format!(
                "duplicate mount point: {dest}"
            )));
        }
        let rw = !m.read_only.unwrap_or(false);
        match m.typ {
            Some(MountTypeEnum::BIND) => {
                let src = m.source.clone().unwrap_or_default();
                if !src.starts_with('/') || !Path::new(&src).exists() {
                    return Err(Error::InvalidInput(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {src}"
                    )));
                }
                let prop = m
                    .bind_options
                    .as_ref()
                    .and_then(|o| o.propagation.as_ref())
                    .map(|p| p.to_string())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "rprivate".into());
                out.push(MountPoint {
                    typ: Some(MountPointTypeEnum::BIND),
                    name: None,
                    source: Some(src),
                    destination: Some(dest),
                    driver: None,
                    mode: Some(String::new()),
                    rw: Some(rw),
                    propagation: Some(prop),
                });
            }
            Some(MountTypeEnum::VOLUME) => {
                let no_copy = m
                    .volume_options
                    .as_ref()
                    .and_then(|o| o.no_copy)
                    .unwrap_or(false);
                let name = match m.source.as_deref().filter(|s| !s.is_empty()) {
                    Some(n) => n.to_string(),
                    None => {
                        let n = crate::names::new_id();
                        anon.push(n.clone());
                        n
                    }
                };
                out.push(volume(&name, &dest, rw, no_copy)?);
            }
            Some(MountTypeEnum::TMPFS) => {
                let mut opts = Vec::new();
                if let Some(t) = &m.tmpfs_options {
                    if let Some(s) = t.size_bytes.filter(|s| *s > 0) {
                        opts.push(format!("size={s}"));
                    }
                    if let Some(md) = t.mode.filter(|m| *m > 0) {
                        opts.push(format!("mode={md:o}"));
                    }
                }
                out.push(tmpfs_point(&dest, opts.join(","), rw));
            }
            _ => {
                return Err(Error::InvalidInput(format!(
                    "mount type {:?} is not supported",
                    m.typ.map(|t| t.to_string()).unwrap_or_default()
                )))
            }
        }
    }
    for (dest, opts) in hc.tmpfs.iter().flatten() {
        let dest = clean_dest(dest)?;
        if !seen.insert(dest.clone()) {
            return Err(Error::InvalidInput(format!(
                "duplicate mount point: {dest}"
            )));
        }
        let rw = !opts.split(',').any(|o| o == "ro");
        let opts: Vec<&str> = opts
            .split(',')
            .filter(|o| !o.is_empty() && *o != "ro" && *o != "rw")
            .collect();
        out.push(tmpfs_point(&dest, opts.join(","), rw));
    }
    for v in image_volumes {
        let dest = clean_dest(v)?;
        if seen.contains(&dest) {
            continue;
        }
        seen.insert(dest.clone());
        let name = crate::names::new_id();
        anon.push(name.clone());
        out.push(volume(&name, &dest, true, false)?);
    }
    Ok((out, anon))
}

fn tmpfs_point(dest: &str, opts: String, rw: bool) -> MountPoint {
    MountPoint {
        typ: Some(MountPointTypeEnum::TMPFS),
        name: None,
        source: Some(String::new()),
        destination: Some(dest.to_string()),
        driver: None,
        mode: Some(opts),
        rw: Some(rw),
        propagation: Some(String::new()),
    }
}
