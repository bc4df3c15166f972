//! `skiffd`, Skiff's daemon: the Docker Engine API on a unix socket, so the `docker` CLI
//! and docker-py work against Skiff unchanged.
//!
//! # Architecture
//!
//! - [`Daemon`] owns the state: the image store (`skiff-store`, opened once, flock'ed),
//!   the registry client settings (`skiff-registry`), the [`volumes::VolumeStore`] and the
//!   [`events::Events`] bus. [`Daemon::handle`] is the whole API as one async function from
//!   a request to a response (generic over the request body, so tests can call it without
//!   a socket); [`Daemon::serve`] runs it on unix listeners with hyper (HTTP/1.1, with
//!   upgrades for attach and exec) and shuts down gracefully.
//! - The container side is `skiff_engine::Engine` (opened by [`Daemon::new`] with
//!   `skiff-monitor` from next to the executable, also run as `skiff-monitor exec` for its exec
//!   helper); `containers` holds the container and exec handlers. Attach and exec start
//!   hijack the connection (`101 UPGRADED`) and bridge it to the monitor's attach socket
//!   (Docker's 8-byte frames both ways), to the exec helper's pipes, or raw to an exec's
//!   pty master (`exec_tty`). The engine's own events (exits, policy restarts, health)
//!   reach [`events::Events`] through its event hook.
//! - `router` strips and checks the `/vX.Y` prefix (API 1.24 to [`API_VERSION`]), decodes
//!   the path and dispatches; `images`, `system`, `volumes_api` and `containers` hold the
//!   handlers.
//!   Errors of every library become a status code and `{"message": ...}` in ONE place,
//!   `error::ApiError`'s `From` impls.
//! - Store, registry and volume calls are blocking: they run on `spawn_blocking` threads.
//!   Long operations stream: pull and push progress goes from the library's callback
//!   through a channel into a chunked body (Docker's JSON message lines); `save` writes
//!   a tar into the body through [`http::ChannelWriter`]; `load` and `import` read the
//!   request body through [`http::BodyReader`]. A client that goes away cancels a pull.
//! - `archive` serves `docker cp`, `export`, `diff` and `commit` over `skiff_engine::fs`
//!   and `skiff_engine::archive`: every client path is resolved inside the container with
//!   `openat2(RESOLVE_IN_ROOT)`; a stopped container is mounted on a thread of its own that
//!   first moves into a private mount namespace (`unshare` on that thread only; it ends with
//!   the request, and its mounts with it).
//!
//! # Forking
//!
//! Nothing here forks. The container work must keep it that way: this process is a
//! multi-threaded tokio runtime, and `fork` from it (without an immediate `exec`) is
//! unsafe. Containers are started by separate processes (skiff-monitor), spawned with
//! `std::process::Command` (fork+exec via `posix_spawn`/`clone(CLONE_VFORK)`), never by
//! forking the daemon and continuing in Rust code. `docker exec` needs the runtime's exec,
//! which forks: it runs in `skiff-monitor exec`, a small static process of its own.

#![forbid(unsafe_code)]
#![recursion_limit = "256"]

mod archive;
mod changes;
pub mod config;
mod containers;
pub mod error;
pub mod events;
mod exec_tty;
pub mod http;
mod images;
mod networks_api;
mod router;
pub mod server;
mod system;
pub mod time;
pub mod volumes;
mod volumes_api;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use hyper::{Request, Response};
use skiff_store::{Store, StoreOptions};
use tokio::sync::watch;

pub use crate::config::Config;
pub use crate::error::ApiError;
use crate::events::Events;
use crate::http::Body;
use crate::volumes::VolumeStore;

/// The newest API version served.
pub const API_VERSION: &str = "1.47";
/// The oldest API version served.
pub const MIN_API_VERSION: &str = "1.24";
/// The engine version reported by `/version` and the `Server` header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The image store could not be opened.
    #[error("opening the image store at {path} failed")]
    Store {
        /// The data root.
        path: std::path::PathBuf,
        /// The store's error.
        #[source]
        source: Box<skiff_store::Error>,
    },
    /// The volume folder could not be opened.
    #[error("opening the volume store failed")]
    Volumes(#[source] volumes::VolumeError),
    /// The network state could not be opened or reconciled.
    #[error("opening the network state failed")]
    Network(#[source] skiff_network::NetworkError),
    /// The container engine could not be opened.
    #[error("opening the container engine failed")]
    Engine(#[source] Box<skiff_engine::Error>),
    /// The registry settings are invalid.
    #[error("the registry settings are invalid")]
    Registry(#[source] skiff_registry::Error),
    /// A file or socket operation failed.
    #[error("{op} {path} failed")]
    Io {
        /// What was done.
        op: &'static str,
        /// On what.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Shared state of all requests.
pub(crate) struct State {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) volumes: VolumeStore,
    pub(crate) registry: skiff_registry::Config,
    pub(crate) client: skiff_registry::Client,
    pub(crate) events: Arc<Events>,
    pub(crate) engine: Arc<skiff_engine::Engine>,
    pub(crate) network: Arc<skiff_network::NetworkManager>,
    pub(crate) net_hook: Arc<networks_api::Hook>,
    pub(crate) execs: containers::Execs,
    pub(crate) id: String,
    pub(crate) shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
}

impl Drop for State {
    fn drop(&mut self) {
        // The last reference goes at exit: an idle daemon leaves no bridge or rule behind.
        match self.network.shutdown() {
            Ok(true) => tracing::info!("network devices removed (no container attached)"),
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot remove the network devices: {}", error::chain(&e)),
        }
    }
}

/// The daemon: state plus the API. Cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    pub(crate) state: Arc<State>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("data_root", &self.state.config.data_root)
            .finish()
    }
}

impl Daemon {
    /// Opens the store and volumes under `config.data_root` (blocking: call before or
    /// outside the async runtime, or from `spawn_blocking`).
    pub fn new(config: Config) -> Result<Daemon, DaemonError> {
        let root = &config.data_root;
        std::fs::create_dir_all(root).map_err(|source| DaemonError::Io {
            op: "creating",
            path: root.clone(),
            source,
        })?;
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .map_err(|source| DaemonError::Io {
                op: "chmod",
                path: root.clone(),
                source,
            })?;
        let mut opts = StoreOptions::default();
        if let Some(d) = config.storage_driver {
            opts.driver = d;
        }
        // A skiffd that is still shutting down (or was killed a moment ago) holds the store's
        // lock for a little while: wait for it rather than fail.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let store = loop {
            match Store::open(root, opts.clone()) {
                Err(skiff_store::Error::Locked(_)) if std::time::Instant::now() < deadline => {
                    tracing::info!("the image store is locked by another process; waiting");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                r => {
                    break r.map_err(|source| DaemonError::Store {
                        path: root.clone(),
                        source: Box::new(source),
                    })?
                }
            }
        };
        let volumes = VolumeStore::open(root).map_err(DaemonError::Volumes)?;
        let registry = skiff_registry::Config {
            insecure_registries: config.insecure_registries.clone(),
            mirrors: config.registry_mirrors.clone(),
            // The daemon uses only the credentials a request brings (X-Registry-Auth), as
            // dockerd does; this folder holds no config.json.
            docker_config_dir: Some(root.join("registry-auth")),
            user_agent: format!("skiffd/{VERSION}"),
            ..Default::default()
        };
        let client =
            skiff_registry::Client::new(registry.clone()).map_err(DaemonError::Registry)?;
        let id = engine_id(root)?;
        let network = Arc::new(networks_api::open(&config).map_err(DaemonError::Network)?);
        let events = Arc::new(Events::default());
        let net_hook = Arc::new(networks_api::Hook {
            mgr: network.clone(),
            events: events.clone(),
            containers: config.data_root.join("containers"),
        });
        let engine = open_engine(&config, &store, events.clone(), net_hook.clone())?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        Ok(Daemon {
            state: Arc::new(State {
                config,
                store,
                volumes,
                registry,
                client,
                events,
                engine: Arc::new(engine),
                network,
                net_hook,
                execs: containers::Execs::default(),
                id,
                shutdown,
                shutdown_tx,
            }),
        })
    }

    /// Serves one request (the whole API).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Display + Send,
    {
        router::handle(self.state.clone(), req).await
    }

    /// Tells streaming responses (`/events`) to end: part of a graceful shutdown.
    pub fn begin_shutdown(&self) {
        let _ = self.state.shutdown_tx.send(true);
    }

    /// The volume store (for the container side).
    pub fn volumes(&self) -> &VolumeStore {
        &self.state.volumes
    }

    /// The image store.
    pub fn store(&self) -> &Store {
        &self.state.store
    }
}

/// Opens the container engine: `skiff-monitor` from next to this executable (unless the
/// configuration names one), `skiff-init` from there too for `--init`, and
/// `skiff-monitor exec` as the exec helper.
fn open_engine(
    config: &Config,
    store: &Store,
    events: Arc<Events>,
    network: Arc<networks_api::Hook>,
) -> Result<skiff_engine::Engine, DaemonError> {
    let exe = std::env::current_exe().map_err(|source| DaemonError::Io {
        op: "locating",
        path: "/proc/self/exe".into(),
        source,
    })?;
    let monitor_bin = config.monitor_bin.clone().unwrap_or_else(|| {
        exe.parent()
            .unwrap_or_else(|| Path::new("/"))
            .join("skiff-monitor")
    });
    if !monitor_bin.exists() {
        tracing::warn!(path = %monitor_bin.display(), "skiff-monitor not found: containers cannot start");
    }
    let mut cfg = skiff_engine::EngineConfig::new(
        config.data_root.clone(),
        config.exec_root.clone(),
        monitor_bin.clone(),
        store.clone(),
    );
    if cfg.init_bin.is_none() {
        tracing::warn!("skiff-init not found next to skiffd: `--init` containers cannot start");
    }
    cfg.exec_helper = Some((
        monitor_bin,
        vec![skiff_monitor::exec_helper::ARG.to_owned()],
    ));
    cfg.events = Some(events);
    cfg.network = Some(network);
    skiff_engine::Engine::open(cfg).map_err(|e| DaemonError::Engine(Box::new(e)))
}

/// The engine ID, kept in `<data-root>/engine-id` (made on first start).
fn engine_id(root: &Path) -> Result<String, DaemonError> {
    let p = root.join("engine-id");
    if let Ok(s) = std::fs::read_to_string(&p) {
        let s = s.trim();
        if !s.is_empty() {
            return Ok(s.to_owned());
        }
    }
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .map_err(|source| DaemonError::Io {
            op: "reading",
            path: "/dev/urandom".into(),
            source,
        })?;
    let h: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    let id = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    std::fs::write(&p, &id).map_err(|source| DaemonError::Io {
        op: "writing",
        path: p.clone(),
        source,
    })?;
    Ok(id)
}
