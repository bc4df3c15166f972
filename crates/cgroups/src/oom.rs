//! OOM-kill notification: v1 `memory.oom_control` through an eventfd registered in
//! `cgroup.event_control`; v2 inotify on `memory.events`. Both count kills with the kernel's
//! `oom_kill` counter, so [`OomWatcher::wait`] reports kills, not just OOM episodes.

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::cgroup::Cgroup;
use crate::mount::Layout;
use crate::{fs, Error};

enum Source {
    V1 {
        efd: EventFd,
        /// Kept open: the registration lives as long as this fd.
        _oom_control: std::fs::File,
    },
    V2 {
        inotify: Inotify,
    },
}

/// Waits for OOM kills in one cgroup.
pub struct OomWatcher {
    source: Source,
    /// The memory cgroup directory.
    dir: PathBuf,
    /// The file with the `oom_kill` counter.
    counter_file: &'static str,
    last: u64,
}

impl std::fmt::Debug for OomWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OomWatcher")
            .field("dir", &self.dir)
            .field("last", &self.last)
            .finish()
    }
}

impl OomWatcher {
    pub(crate) fn new(cg: &Cgroup) -> Result<OomWatcher, Error> {
        let (dir, v2) = match cg.layout {
            Layout::Unified => match cg.unified() {
                Some(d) => (d.path.clone(), true),
                None => return Err(missing()),
            },
            _ => match cg.v1_dir("memory") {
                Some(d) => (d.path.clone(), false),
                None => return Err(missing()),
            },
        };
        let err = |what: &'static str, path: PathBuf| {
            move |e: nix::errno::Errno| Error::OomWatch {
                path,
                what,
                source: e.into(),
            }
        };
        let (source, counter_file) = if v2 {
            let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
                .map_err(err("create an inotify instance", dir.clone()))?;
            let events = dir.join("memory.events");
            inotify
                .add_watch(&events, AddWatchFlags::IN_MODIFY)
                .map_err(err("watch", events.clone()))?;
            (Source::V2 { inotify }, "memory.events")
        } else {
            let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(err("create an eventfd", dir.clone()))?;
            let ctl = dir.join("memory.oom_control");
            let oom_control = std::fs::File::open(&ctl).map_err(|source| Error::OomWatch {
                path: ctl.clone(),
                what: "open",
                source,
            })?;
            let line = format!("{} {}", efd.as_fd().as_raw_fd(), oom_control.as_raw_fd());
            fs::write(&dir, "cgroup.event_control", &line, false)?;
            (
                Source::V1 {
                    efd,
                    _oom_control: oom_control,
                },
                "memory.oom_control",
            )
        };
        let mut w = OomWatcher {
            source,
            dir,
            counter_file,
            last: 0,
        };
        w.last = w.count()?;
        Ok(w)
    }

    fn count(&self) -> Result<u64, Error> {
        match fs::keyed_value(&self.dir, self.counter_file, "oom_kill") {
            Ok(v) => Ok(v.unwrap_or(0)),
            Err(Error::Read { source, .. })
                if fs::is_not_found(&source) || source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Err(Error::Removed {
                    path: self.dir.clone(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout` and returns the number of OOM kills since the previous call (or
    /// since the watcher was made); 0 on timeout. [`Error::Removed`] once the cgroup is gone.
    pub fn wait(&mut self, timeout: Duration) -> Result<u64, Error> {
        let start = Instant::now();
        loop {
            let now = self.count()?;
            if now > self.last {
                let n = now - self.last;
                self.last = now;
                return Ok(n);
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(0);
            }
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            let ready = {
                let fd = match &self.source {
                    Source::V1 { efd, .. } => efd.as_fd(),
                    Source::V2 { inotify } => inotify.as_fd(),
                };
                let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
                match poll(
                    &mut fds,
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
                ) {
                    Ok(n) => n > 0,
                    Err(nix::errno::Errno::EINTR) => false,
                    Err(e) => {
                        return Err(Error::OomWatch {
                            path: self.dir.clone(),
                            what: "poll",
                            source: e.into(),
                        })
                    }
                }
            };
            if ready {
                // Drain; the counter is what matters. The v1 eventfd also fires when the
                // cgroup is removed, which count() then reports.
                match &self.source {
                    Source::V1 { efd, .. } => {
                        let _ = efd.read();
                    }
                    Source::V2 { inotify } => {
                        let _ = inotify.read_events();
                    }
                }
                if matches!(self.source, Source::V1 { .. }) {
                    // v1 signals when the OOM starts; the kill is counted a moment later.
                    for _ in 0..40 {
                        if self.count()? > self.last {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                if !self.dir.is_dir() {
                    return Err(Error::Removed {
                        path: self.dir.clone(),
                    });
                }
            }
        }
    }
}

fn missing() -> Error {
    Error::ControllerMissing {
        field: "memory (OOM events)",
        controller: "memory",
    }
}
