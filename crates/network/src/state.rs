//! The persisted state: one JSON file written atomically (temp file, fsync, rename, fsync dir).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{NetworkError, Result};
use crate::ipam::Pool;
use crate::{Endpoint, Network};

const FILE: &str = "networks.json";

/// A network with its address pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NetworkRecord {
    pub info: Network,
    pub pool: Option<Pool>,
    /// Whether its bridge has been created (the default bridge is created on first use).
    pub materialized: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    pub networks: Vec<NetworkRecord>,
    pub endpoints: Vec<Endpoint>,
}

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

pub(crate) fn load(dir: &Path) -> Result<Option<State>> {
    let p = path(dir);
    match fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| NetworkError::State { path: p, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NetworkError::io("read", p, e)),
    }
}

pub(crate) fn save(dir: &Path, state: &State) -> Result<()> {
    let p = path(dir);
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let data = serde_json::to_vec_pretty(state).expect("the state serializes");
    let mut f = File::create(&tmp).map_err(|e| NetworkError::io("create", &tmp, e))?;
    f.write_all(&data)
        .and_then(|()| f.sync_all())
        .map_err(|e| NetworkError::io("write", &tmp, e))?;
    fs::rename(&tmp, &p).map_err(|e| NetworkError::io("rename into place", &p, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| NetworkError::io("sync", dir, e))
}
