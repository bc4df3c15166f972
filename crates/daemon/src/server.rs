//! The unix socket listeners and the connection loop with graceful shutdown.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::{Daemon, DaemonError};

/// How long in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// A bound API socket; the socket file is removed on drop.
#[derive(Debug)]
pub struct Socket {
    listener: UnixListener,
    path: PathBuf,
}

impl Socket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` (creating its folder), mode 0660 with group `group` if that group exists,
/// else 0600 (root only). A stale socket file is replaced; a live one (another daemon
/// answers) is an error. Must run inside a tokio runtime.
pub fn bind(path: &Path, group: &str) -> Result<Socket, DaemonError> {
    let io = |op: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| DaemonError::Io {
            op,
            path: p,
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::Io {
                op: "binding",
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another daemon is listening on this socket",
                ),
            });
        }
        std::fs::remove_file(path).map_err(io("removing the stale socket", path))?;
    }
    let listener = UnixListener::bind(path).map_err(io("binding", path))?;
    let socket = Socket {
        listener,
        path: path.to_owned(),
    };
    let mode = match group_id(group) {
        Some(gid) => {
            std::os::unix::fs::chown(path, Some(0), Some(gid)).map_err(io("chown", path))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("chmod", path))?;
    Ok(socket)
}

/// The ID of group `name` from `/etc/group`.
fn group_id(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.next()?;
        f.next()?.parse().ok()
    })
}

impl Daemon {
    /// Serves the API on `sockets` until `shutdown` completes; then stops accepting, ends
    /// event streams, waits up to [`SHUTDOWN_GRACE`] for requests in flight, and removes
    /// the socket files.
    pub async fn serve(self, sockets: Vec<Socket>, shutdown: impl Future<Output = ()>) {
        // Each connection task holds a clone of `alive`; all are gone when `idle` ends.
        let (alive, mut idle) = tokio::sync::mpsc::channel::<()>(1);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel(64);
        let mut accepters = Vec::new();
        for s in &sockets {
            tracing::info!(socket = %s.path.display(), "API listening");
        }
        for s in sockets {
            let conn_tx = conn_tx.clone();
            let mut stop = stop_rx.clone();
            accepters.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.changed() => break,
                        r = s.listener.accept() => match r {
                            Ok((stream, _)) => {
                                if conn_tx.send(stream).await.is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "accept failed");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
                drop(s);
            }));
        }
        drop(conn_tx);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                c = conn_rx.recv() => {
                    let Some(stream) = c else { break };
                    let daemon = self.clone();
                    let gone = PeerGone::watch(&stream);
                    let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        let daemon = daemon.clone();
                        if let Some(g) = &gone {
                            req.extensions_mut().insert(g.clone());
                        }
                        async move { Ok::<_, std::convert::Infallible>(daemon.handle(req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades();
                    let alive = alive.clone();
                    let mut stop = stop_rx.clone();
                    tokio::spawn(async move {
                        let mut conn = std::pin::pin!(conn);
                        let res = tokio::select! {
                            r = conn.as_mut() => r,
                            _ = stop.changed() => {
                                // Finish the request in flight, then close.
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(e) = res {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        drop(alive);
                    });
                }
            }
        }
        tracing::info!("shutting down: no new connections");
        let _ = stop_tx.send(true);
        for a in accepters {
            let _ = a.await;
        }
        self.begin_shutdown();
        drop(alive);
        if tokio::time::timeout(SHUTDOWN_GRACE, idle.recv())
            .await
            .is_err()
        {
            tracing::warn!("requests still running after the grace period were dropped");
        }
        tracing::info!("shut down");
    }
}

/// Whether the client has closed its end of the connection, seen without reading from it
/// (the socket's `EPOLLRDHUP`, through a duplicate registered with the reactor): a handler
/// whose answer waits for an event (`wait`: the docker CLI sends one for every `run`, even
/// `run -d`, and goes away) stops waiting then instead of holding a thread until the event.
/// hyper itself does not notice a peer that hangs up while a response body is pending.
#[derive(Clone, Debug)]
pub(crate) struct PeerGone(tokio::sync::watch::Receiver<bool>);

impl PeerGone {
    /// Starts watching `stream`; the watch ends with the peer's hang-up or once every
    /// `PeerGone` of the connection is dropped. `None` if the socket cannot be watched.
    fn watch(stream: &tokio::net::UnixStream) -> Option<PeerGone> {
        use std::os::fd::AsFd;
        use tokio::io::Interest;
        let fd = stream.as_fd().try_clone_to_owned().ok()?;
        let dup = std::os::unix::net::UnixStream::from(fd);
        dup.set_nonblocking(true).ok()?;
        let dup = tokio::net::UnixStream::from_std(dup).ok()?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = dup.ready(Interest::READABLE) => match r {
                        Ok(ready) if ready.is_read_closed() => {
                            let _ = tx.send(true);
                            return;
                        }
                        Ok(_) => {
                            // Data for hyper, which reads it through its own registration:
                            // forget this readiness without reading anything.
                            let _ = dup.try_io(Interest::READABLE, || {
                                Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
                            });
                        }
                        Err(_) => return,
                    },
                    () = tx.closed() => return,
                }
            }
        });
        Some(PeerGone(rx))
    }

    /// Resolves once the client has hung up (never, if the watch ended without it).
    pub(crate) async fn hung_up(&mut self) {
        if self.0.wait_for(|gone| *gone).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
