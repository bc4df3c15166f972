//! What the engine keeps per container (`<data_root>/containers/<id>/config.json`) and the
//! Docker-shaped request it is made from.

use std::collections::HashMap;
use std::time::SystemTime;

use bollard_stubs::models::{ContainerConfig, HostConfig, MountPoint, NetworkingConfig};
use serde::{Deserialize, Serialize};

/// The body of `POST /containers/create`: the container config with `HostConfig` and
/// `NetworkingConfig` beside its fields, exactly as Docker clients send it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateBody {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(
        rename = "HostConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub host_config: Option<HostConfig>,
    #[serde(
        rename = "NetworkingConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub networking_config: Option<NetworkingConfig>,
}

/// Docker's container states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Whether a container process (and its monitor) is alive.
    pub fn is_running(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// The `State` part of a container record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    pub status: Status,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// The healthcheck's state (containers with a healthcheck, once started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<bollard_stubs::models::Health>,
}

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            oom_killed: false,
            health: None,
        }
    }
}

/// The monitor process that runs (or ran) the container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct MonitorRef {
    pub pid: i32,
    /// Its start time (/proc/<pid>/stat field 22), to tell a reused pid apart.
    pub start_time: u64,
    /// Started with `--wait-start` and not told to start yet.
    pub waiting: bool,
}

/// Everything the engine persists about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Record {
    pub id: String,
    /// With its leading `/`, as Docker shows it.
    pub name: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    /// The image as the client named it.
    pub image_name: String,
    /// The image ID (`sha256:...`).
    pub image: String,
    /// The merged config (image defaults + request).
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub state: State,
    pub mounts: Vec<MountPoint>,
    /// Volumes made for this container from the image's `VOLUME`s (removed with `rm -v`).
    #[serde(default)]
    pub anonymous_volumes: Vec<String>,
    pub restart_count: i64,
    pub log_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
    pub resolv_conf_path: String,
    #[serde(default)]
    pub monitor: Option<MonitorRef>,
    /// Stopped by a user (restart policies then leave it alone).
    #[serde(default)]
    pub manually_stopped: bool,
    /// Json-file rotation of this container's log.
    #[serde(default)]
    pub log_max_size: u64,
    #[serde(default = "one")]
    pub log_max_file: u32,
    /// `NetworkingConfig` of the create request (aliases, `--ip`, per network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking_config: Option<NetworkingConfig>,
}

fn one() -> u32 {
    1
}

/// Options of [`crate::Engine::logs`].
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub follow: bool,
    /// Only the last N lines (None: all).
    pub tail: Option<usize>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    pub timestamps: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: skiff_monitor::logfile::Stream,
    /// RFC 3339 with nanoseconds.
    pub time: String,
    pub line: String,
}

impl LogEntry {
    /// The line as `docker logs` prints it (with `timestamps`, prefixed by its time).
    pub fn render(&self, timestamps: bool) -> String {
        if timestamps {
            format!("{} {}", self.time, self.line)
        } else {
            self.line.clone()
        }
    }
}

/// `wait` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitCondition {
    #[default]
    NotRunning,
    NextExit,
    Removed,
}

impl std::str::FromStr for WaitCondition {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            _ => Err(crate::Error::InvalidInput(format!(
                "invalid condition: {s:?}"
            ))),
        }
    }
}

/// `docker ps` filters: key → values (`status`, `name`, `id`, `label`, `ancestor`, `exited`).
pub type Filters = HashMap<String, Vec<String>>;

pub(crate) fn now() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}
