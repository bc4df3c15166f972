//! Credentials in the Docker client configuration (`~/.docker/config.json`, `auths`).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Deserialize;
use skiff_reference::DEFAULT_REGISTRY;

use crate::error::{Error, Result};

/// The `auths` key Docker uses for Docker Hub.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

const CONFIG_FILE: &str = "config.json";

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A user name and password (or personal access token), sent as HTTP basic auth or to the
    /// token server.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in config.json), exchanged at the token server.
    IdentityToken {
        /// The user name, if recorded.
        username: String,
        /// The refresh token.
        token: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, not even in debug logs.
        match self {
            Credential::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Credential::IdentityToken { username, .. } => {
                write!(
                    f,
                    "IdentityToken {{ username: {username:?}, token: <redacted> }}"
                )
            }
        }
    }
}

/// The folder of the Docker client configuration: `override_dir`, else `$DOCKER_CONFIG`,
/// else `$HOME/.docker`.
pub fn docker_config_dir(override_dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = override_dir {
        return Some(dir.to_owned());
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".docker"))
}

/// The `auths` key under which Docker stores credentials for `registry`.
pub fn auth_key(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_AUTH_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        DEFAULT_REGISTRY | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    )
}

/// Docker's `ConvertToHostname`: `https://host:5000/v1/` → `host:5000`.
fn key_hostname(key: &str) -> &str {
    let rest = key
        .strip_prefix("http://")
        .or_else(|| key.strip_prefix("https://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Credentials loaded from a Docker client configuration, by registry host.
#[derive(Debug, Clone, Default)]
pub(crate) struct CredentialStore {
    by_host: HashMap<String, Credential>,
}

impl CredentialStore {
    /// Loads `dir/config.json`; a missing file or folder gives an empty store.
    pub fn load(dir: &Path) -> Result<CredentialStore> {
        let path = dir.join(CONFIG_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(Error::DockerConfigIo {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        if data.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let file: ConfigFile =
            serde_json::from_slice(&data).map_err(|e| Error::DockerConfigInvalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if let Some(store) = &file.creds_store {
            tracing::debug!(
                store,
                "credential helpers are not supported; using only the auths of {}",
                path.display()
            );
        }
        let mut by_host = HashMap::new();
        for (key, entry) in file.auths {
            let host = key_hostname(&key);
            let host = if is_docker_hub(host) {
                DEFAULT_REGISTRY
            } else {
                host
            };
            let invalid = |reason: String| Error::DockerConfigInvalid {
                path: path.clone(),
                reason: format!("auths[{key:?}]: {reason}"),
            };
            let (mut username, mut password) = (entry.username, entry.password);
            if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
                let decoded = BASE64
                    .decode(auth.trim())
                    .map_err(|e| invalid(format!("auth is not base64: {e}")))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| invalid("auth is not UTF-8".to_owned()))?;
                let (u, p) = decoded
                    .split_once(':')
                    .ok_or_else(|| invalid("auth is not user:password".to_owned()))?;
                username = Some(u.to_owned());
                password = Some(p.to_owned());
            }
            let cred = if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
                Credential::IdentityToken {
                    username: username.unwrap_or_default(),
                    token,
                }
            } else {
                match (username, password) {
                    (Some(username), Some(password)) if !username.is_empty() => {
                        Credential::Basic { username, password }
                    }
                    _ => continue,
                }
            };
            // An exact key like "host:5000" beats "https://host:5000/v1/"; keep the first of equals.
            let exact = key == host || key == DOCKER_HUB_AUTH_KEY;
            if exact || !by_host.contains_key(host) {
                by_host.insert(host.to_owned(), cred);
            }
        }
        Ok(CredentialStore { by_host })
    }

    /// The credentials for a registry host (`docker.io`, `127.0.0.1:5000`).
    pub fn get(&self, registry: &str) -> Option<&Credential> {
        let host = if is_docker_hub(registry) {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        self.by_host.get(host)
    }

    pub fn set(&mut self, registry: &str, cred: Credential) {
        let host = if is_docker_hub(registry) {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        self.by_host.insert(host.to_owned(), cred);
    }
}

/// Writes `username`/`password` for `registry` into `dir/config.json`, keeping everything
/// else in the file. The file is replaced atomically (temporary file, fsync, rename) and has
/// mode 0600; the folder is created with mode 0700 if missing. Returns the file's path.
pub fn store_credentials(
    dir: &Path,
    registry: &str,
    username: &str,
    password: &str,
) -> Result<PathBuf> {
    let path = dir.join(CONFIG_FILE);
    let io_err = |action, source| Error::DockerConfigIo {
        action,
        path: path.clone(),
        source,
    };
    let mut doc = match fs::read(&path) {
        Ok(d) if d.iter().all(u8::is_ascii_whitespace) => serde_json::json!({}),
        Ok(d) => serde_json::from_slice::<serde_json::Value>(&d).map_err(|e| {
            Error::DockerConfigInvalid {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(io_err("read", e)),
    };
    let invalid = |reason: &str| Error::DockerConfigInvalid {
        path: path.clone(),
        reason: reason.to_owned(),
    };
    let root = doc
        .as_object_mut()
        .ok_or_else(|| invalid("not a JSON object"))?;
    let auths = root
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| invalid("auths is not a JSON object"))?;
    let auth = BASE64.encode(format!("{username}:{password}"));
    auths.insert(auth_key(registry), serde_json::json!({ "auth": auth }));
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("a JSON value serializes");
    bytes.push(b'\n');

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("write", e))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{CONFIG_FILE}.{}.{nanos}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        // Make the rename durable too.
        fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", e));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn basic(u: &str, p: &str) -> Credential {
        Credential::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn reads_auths() {
        let dir = tempfile::tempdir().unwrap();
        let json = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": BASE64.encode("hub:pw:with:colons")},
                "https://reg.example:5000/v1/": {"auth": BASE64.encode("old:old")},
                "reg.example:5000": {"auth": BASE64.encode("new:new")},
                "http://plain.example": {"username": "u", "password": "p"},
                "tok.example": {"auth": BASE64.encode("tu:"), "identitytoken": "refresh"},
                "empty.example": {}
            },
            "credsStore": "desktop",
            "other": [1, 2]
        });
        fs::write(dir.path().join("config.json"), json.to_string()).unwrap();
        let store = CredentialStore::load(dir.path()).unwrap();
        assert_eq!(
            store.get("docker.io"),
            Some(&basic("hub", "pw:with:colons"))
        );
        assert_eq!(
            store.get("index.docker.io"),
            Some(&basic("hub", "pw:with:colons"))
        );
        assert_eq!(store.get("reg.example:5000"), Some(&basic("new", "new")));
        assert_eq!(store.get("plain.example"), Some(&basic("u", "p")));
        assert_eq!(
            store.get("tok.example"),
            Some(&Credential::IdentityToken {
                username: "tu".into(),
                token: "refresh".into()
            })
        );
        assert_eq!(store.get("empty.example"), None);
        assert_eq!(store.get("reg.example"), None);
        // secrets never show in Debug
        assert!(!format!("{:?}", store.get("docker.io")).contains("pw"));
    }

    #[test]
    fn missing_and_invalid_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(CredentialStore::load(&dir.path().join("nope"))
            .unwrap()
            .get("docker.io")
            .is_none());
        fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let err = CredentialStore::load(dir.path()).unwrap_err();
        assert!(matches!(err, Error::DockerConfigInvalid { .. }), "{err}");
        fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"r":{"auth":"!!!"}}}"#,
        )
        .unwrap();
        let err = CredentialStore::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("auths[\"r\"]") && err.contains("base64"),
            "{err}"
        );
    }

    #[test]
    fn writes_atomically_keeping_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("sub");
        let path = store_credentials(&cfg, "docker.io", "me", "secret").unwrap();
        assert_eq!(path, cfg.join("config.json"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(&cfg).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            v["auths"]["https://index.docker.io/v1/"]["auth"],
            BASE64.encode("me:secret")
        );

        // keeps unrelated keys and entries
        let mut v = v;
        v["psFormat"] = "table".into();
        v["auths"]["other:1"] = serde_json::json!({"auth": BASE64.encode("o:o")});
        fs::write(&path, v.to_string()).unwrap();
        store_credentials(&cfg, "127.0.0.1:5000", "u", "p").unwrap();
        let store = CredentialStore::load(&cfg).unwrap();
        assert_eq!(store.get("docker.io"), Some(&basic("me", "secret")));
        assert_eq!(store.get("other:1"), Some(&basic("o", "o")));
        assert_eq!(store.get("127.0.0.1:5000"), Some(&basic("u", "p")));
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "table");
        // no temporary files left
        let names: Vec<_> = fs::read_dir(&cfg)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.json"]);
    }

    #[test]
    fn config_dir_precedence() {
        assert_eq!(
            docker_config_dir(Some(Path::new("/x"))),
            Some(PathBuf::from("/x"))
        );
        assert_eq!(auth_key("docker.io"), DOCKER_HUB_AUTH_KEY);
        assert_eq!(auth_key("r:5000"), "r:5000");
        assert_eq!(key_hostname("https://r:5000/v1/"), "r:5000");
        assert_eq!(key_hostname("r"), "r");
    }
}
