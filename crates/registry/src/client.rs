//! The registry client: endpoints, TLS, authentication, manifests and blob downloads.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use oci_spec::image::Descriptor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use skiff_reference::{Digest, Reference, DEFAULT_REGISTRY, DOCKER_HUB_API_HOST};
use ureq::config::RedirectAuthHeaders;
use ureq::http::Response;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body, SendBody};

use crate::auth::{self, AuthScheme, Token, TokenResponse};
use crate::blob::{BlobReader, BlobSource};
use crate::credentials::{self, Credential, CredentialStore};
use crate::error::{error_codes, error_detail, Error, Result};
use crate::hash::{digest_of, sha256_digest};
use crate::manifest::{
    self, Manifest, ManifestKind, Resolved, MANIFEST_ACCEPT, MANIFEST_SIZE_LIMIT,
};
use crate::platform::{self, Platform};

/// Settings of a [`Client`]. `Config::default()` is what `dockerd` does with an empty
/// `daemon.json`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Registries that may be reached over plain HTTP, besides the always-insecure
    /// `localhost`, 127.0.0.0/8 and `::1`: `host`, `host:port`, or an IP network in CIDR
    /// notation (`10.0.0.0/8`, matched against IP-literal registry names only). As in Docker,
    /// HTTPS is tried first and plain HTTP is the fallback.
    pub insecure_registries: Vec<String>,
    /// Mirrors for `docker.io`, as URLs (`https://mirror.example`), tried in order before
    /// Docker Hub itself for pulls (never for pushes).
    pub mirrors: Vec<String>,
    /// Where `config.json` with the credentials lives; `None`: `$DOCKER_CONFIG`, else
    /// `$HOME/.docker`.
    pub docker_config_dir: Option<PathBuf>,
    /// Folder of per-registry CA files, `<dir>/<host[:port]>/*.crt`, trusted on top of the
    /// system roots (Docker's `/etc/docker/certs.d`). `None` disables it.
    pub certs_dir: Option<PathBuf>,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// How many times a blob download resumes after a broken connection without progress
    /// in between.
    pub retries: u32,
    /// The first pause before a retry; it doubles each time (at most 10 s).
    pub retry_delay: Duration,
    /// Timeout to open a connection.
    pub connect_timeout: Duration,
    /// Timeout for each read from a connection (a stalled transfer fails, then resumes).
    pub read_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            insecure_registries: Vec::new(),
            mirrors: Vec::new(),
            docker_config_dir: None,
            certs_dir: Some(PathBuf::from("/etc/docker/certs.d")),
            user_agent: format!("skiff/{}", env!("CARGO_PKG_VERSION")),
            retries: 5,
            retry_delay: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// How [`Client::push_blob`] uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// One `PUT` with the whole blob after the `POST` that opens the upload.
    Monolithic,
    /// `PATCH` requests of this many bytes (with `Content-Range`), then a closing `PUT`.
    Chunked(usize),
}

/// A registry client. Cheap to clone; clones share connections, pings and tokens, and can be
/// used from several threads at once (a pull downloads layers in parallel).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    mirrors: Vec<String>,
    roots: Arc<Vec<Certificate<'static>>>,
    default_agent: Agent,
    agents: Mutex<HashMap<String, Agent>>,
    creds: RwLock<CredentialStore>,
    hosts: Mutex<HashMap<String, Arc<HostState>>>,
}

/// Where and how to reach one registry (or mirror), learnt from `GET /v2/`.
pub(crate) struct HostState {
    /// `https://host:port` (or a mirror URL).
    base: String,
    /// `host:port`: the key for credentials and CA files.
    host: String,
    auth: Mutex<AuthScheme>,
    tokens: Mutex<HashMap<String, Token>>,
}

/// A repository on a reachable registry.
#[derive(Clone)]
pub(crate) struct Target {
    state: Arc<HostState>,
    /// The registry as named in the reference (for messages).
    registry: String,
    repository: String,
}

impl Target {
    pub(crate) fn registry_name(&self) -> &str {
        &self.registry
    }

    pub(crate) fn repository_name(&self) -> &str {
        &self.repository
    }

    pub(crate) fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.state.base, self.repository)
    }
}

/// Candidate ways to reach a registry: the bases to try in order.
struct EndpointSpec {
    key: String,
    bases: Vec<String>,
    host: String,
}

pub(crate) enum ReqBody<'a> {
    Empty,
    Bytes(&'a [u8]),
    Reader(&'a mut dyn Read),
}

impl ReqBody<'_> {
    fn replayable(&self) -> bool {
        !matches!(self, ReqBody::Reader(_))
    }
}

const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(crate) fn enc(s: &str) -> String {
    utf8_percent_encode(s, QUERY).to_string()
}

/// Largest error body read to build an error message.
const ERROR_BODY_LIMIT: u64 = 64 << 10;
/// Largest token server answer.
const TOKEN_BODY_LIMIT: u64 = 1 << 20;

impl Client {
    /// A client with these settings. Reads the credentials file once (see
    /// [`Client::reload_credentials`]) and the system CA roots.
    pub fn new(config: Config) -> Result<Client> {
        let mut mirrors = Vec::new();
        for m in &config.mirrors {
            let m = m.trim_end_matches('/');
            if !(m.starts_with("https://") || m.starts_with("http://")) || m.len() < 9 {
                return Err(Error::InvalidConfig(format!(
                    "registry mirror {m:?} must be an http:// or https:// URL"
                )));
            }
            mirrors.push(m.to_owned());
        }
        let roots = Arc::new(system_roots().to_vec());
        let default_agent = build_agent(&config, &roots, &[]);
        let creds = load_creds(&config)?;
        Ok(Client {
            inner: Arc::new(Inner {
                mirrors,
                roots,
                default_agent,
                agents: Mutex::new(HashMap::new()),
                creds: RwLock::new(creds),
                hosts: Mutex::new(HashMap::new()),
                config,
            }),
        })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Reads the credentials file again, and forgets cached tokens.
    pub fn reload_credentials(&self) -> Result<()> {
        let creds = load_creds(&self.inner.config)?;
        *self.inner.creds.write().expect("credentials lock") = creds;
        self.inner.hosts.lock().expect("hosts lock").clear();
        Ok(())
    }

    /// Uses `credential` for `registry` (`docker.io`, `host:port`) from now on, in place of
    /// what the credentials file says; nothing is written.
    pub fn set_credential(&self, registry: &str, credential: Credential) {
        self.inner
            .creds
            .write()
            .expect("credentials lock")
            .set(&normalize_registry(registry), credential);
        self.forget_host(&normalize_registry(registry));
    }

    fn forget_host(&self, registry: &str) {
        let host = api_host(registry);
        self.inner
            .hosts
            .lock()
            .expect("hosts lock")
            .retain(|_, st| st.host != host);
    }

    /// Checks `username`/`password` against `registry` (`docker.io`, `host:port`, or a URL
    /// such as `https://index.docker.io/v1/`) and on success stores them in the credentials
    /// file (`config.json`, mode 0600, replaced atomically; Docker Hub under
    /// `https://index.docker.io/v1/`). Returns the file's path.
    pub fn login(&self, registry: &str, username: &str, password: &str) -> Result<PathBuf> {
        let registry = normalize_registry(registry);
        let cred = Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        let spec = self.registry_spec(&registry);
        let state = Arc::new(self.ping(&spec)?);
        let scheme = state.auth.lock().expect("auth lock").clone();
        match scheme {
            AuthScheme::Anonymous => {
                tracing::debug!(registry, "registry needs no authentication; storing anyway")
            }
            AuthScheme::Basic => {
                let url = format!("{}/v2/", state.base);
                let resp = self.send(
                    &state.host,
                    "GET",
                    &url,
                    &[],
                    ReqBody::Empty,
                    basic_header(&cred),
                )?;
                if resp.status().as_u16() != 200 {
                    let target = Target {
                        state: state.clone(),
                        registry: registry.clone(),
                        repository: String::new(),
                    };
                    return Err(self.status_error(&target, "GET", &url, resp, "login"));
                }
            }
            AuthScheme::Bearer { realm, service } => {
                let target = Target {
                    state: state.clone(),
                    registry: registry.clone(),
                    repository: String::new(),
                };
                self.fetch_token(&target, &realm, service.as_deref(), &[], Some(&cred))?;
            }
        }
        let dir = credentials::docker_config_dir(self.inner.config.docker_config_dir.as_deref())
            .ok_or_else(|| {
                Error::InvalidConfig(
                    "no folder for config.json: set DOCKER_CONFIG or HOME".to_owned(),
                )
            })?;
        let path = credentials::store_credentials(&dir, &registry, username, password)?;
        self.set_credential(&registry, cred);
        Ok(path)
    }

    /// Fetches the manifest or index `reference` names (by digest if it has one, else by
    /// tag), checks its digest (against the reference's digest, or against
    /// `Docker-Content-Digest` for a tag) and parses it. Schema 1 is refused.
    pub fn fetch_manifest(&self, reference: &Reference) -> Result<Manifest> {
        self.with_pull_endpoints(reference, |t| self.fetch_manifest_at(t, reference))
    }

    /// Fetches the manifest of `reference` and, for an index or manifest list, the image
    /// manifest for `platform` (attestation entries skipped). A single-platform image is
    /// returned as is: check its config's platform if it matters.
    pub fn resolve(&self, reference: &Reference, platform: &Platform) -> Result<Resolved> {
        let top = self.fetch_manifest(reference)?;
        let index = match &top.kind {
            ManifestKind::Image(m) => {
                return Ok(Resolved {
                    digest: top.digest.clone(),
                    index: None,
                    platform: None,
                    config: m.config().clone(),
                    layers: m.layers().clone(),
                    manifest: top,
                })
            }
            ManifestKind::Index(i) => i,
        };
        let entry = platform::select(index.manifests(), platform, &reference.to_string())?;
        let digest = descriptor_digest(entry, &reference.to_string())?;
        let child_ref = reference.with_digest(digest);
        let child = self.fetch_manifest(&child_ref)?;
        if child.bytes.len() as u64 != entry.size() {
            return Err(Error::SizeMismatch {
                what: format!("manifest {child_ref}"),
                expected: entry.size(),
                actual: child.bytes.len() as u64,
            });
        }
        let ManifestKind::Image(m) = &child.kind else {
            return Err(Error::InvalidManifest {
                reference: child_ref.to_string(),
                media_type: child.media_type.clone(),
                reason: "an index entry for a platform is itself an index".to_owned(),
            });
        };
        Ok(Resolved {
            digest: top.digest.clone(),
            platform: entry.platform().as_ref().map(Platform::from),
            config: m.config().clone(),
            layers: m.layers().clone(),
            manifest: child,
            index: Some(top),
        })
    }

    /// Opens a blob of `repo`'s repository (its tag and digest are ignored) for streaming.
    /// The reader checks size and digest as it goes and fails instead of delivering the last
    /// bytes if they are wrong; a broken connection is resumed with a `Range` request.
    /// A non-distributable layer the registry lacks is fetched from the descriptor's `urls`.
    pub fn fetch_blob(&self, repo: &Reference, descriptor: &Descriptor) -> Result<BlobReader> {
        let what_ref = repo.name();
        let digest = descriptor_digest(descriptor, &what_ref)?;
        let size = descriptor.size();
        let what = format!("blob {digest} of {what_ref}");
        let opened = self.with_pull_endpoints(repo, |t| {
            let source = BlobSource::Registry(t.clone());
            let body = self.open_blob(&source, &digest, 0)?;
            Ok((source, body))
        });
        let foreign_urls = descriptor
            .urls()
            .as_ref()
            .filter(|_| manifest::is_non_distributable(descriptor.media_type().as_ref()))
            .cloned()
            .unwrap_or_default();
        let (source, body) = match opened {
            Ok(v) => v,
            Err(e) if e.is_not_found() && !foreign_urls.is_empty() => {
                let mut last = e;
                let mut found = None;
                for url in foreign_urls {
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        continue;
                    }
                    let source = BlobSource::Url(url);
                    match self.open_blob(&source, &digest, 0) {
                        Ok(body) => {
                            found = Some((source, body));
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "foreign layer URL failed");
                            last = e;
                        }
                    }
                }
                found.ok_or(last)?
            }
            Err(e) => return Err(e),
        };
        Ok(BlobReader::new(
            self.clone(),
            source,
            what,
            digest,
            size,
            body,
        ))
    }

    /// Fetches a small blob (a config) whole, verified; refuses one larger than `limit`.
    pub fn fetch_blob_bytes(
        &self,
        repo: &Reference,
        descriptor: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>> {
        if descriptor.size() > limit {
            return Err(Error::TooLarge {
                what: format!("blob {} of {}", descriptor.digest(), repo.name()),
                limit,
            });
        }
        let mut reader = self.fetch_blob(repo, descriptor)?;
        let mut out = Vec::with_capacity(usize::try_from(descriptor.size()).unwrap_or(0));
        reader
            .read_to_end(&mut out)
            .map_err(|e| crate::blob::io_to_error(e, &repo.name()))?;
        Ok(out)
    }

    // ---- internals shared with blob.rs and push.rs ----

    pub(crate) fn retries(&self) -> u32 {
        self.inner.config.retries
    }

    pub(crate) fn retry_delay(&self) -> Duration {
        self.inner.config.retry_delay
    }

    /// Opens a blob at `offset`. Returns the body and how many of its leading bytes to drop
    /// (when the server ignored the `Range` header and sent everything).
    pub(crate) fn open_blob(
        &self,
        source: &BlobSource,
        digest: &Digest,
        offset: u64,
    ) -> Result<(Box<dyn Read + Send>, u64)> {
        let range = format!("bytes={offset}-");
        let headers: Vec<(&str, &str)> = if offset > 0 {
            vec![("Range", range.as_str())]
        } else {
            Vec::new()
        };
        let (resp, url, target) = match source {
            BlobSource::Registry(t) => {
                let url = t.url(&format!("blobs/{digest}"));
                let resp =
                    self.request(t, &[pull_scope(t)], "GET", &url, &headers, ReqBody::Empty)?;
                (resp, url, Some(t))
            }
            BlobSource::Url(url) => {
                let host = url_host(url).unwrap_or_default();
                let resp = self.send(&host, "GET", url, &headers, ReqBody::Empty, None)?;
                (resp, url.clone(), None)
            }
        };
        let status = resp.status().as_u16();
        match status {
            200 => {
                let body: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
                Ok((body, offset))
            }
            206 if offset > 0 => {
                let start = header(&resp, "content-range").and_then(|cr| {
                    cr.strip_prefix("bytes ")
                        .and_then(|r| r.split('-').next())
                        .and_then(|s| s.trim().parse::<u64>().ok())
                });
                if start != Some(offset) {
                    return Err(Error::InvalidHeader {
                        registry: url_host(&url).unwrap_or_default(),
                        header: "Content-Range",
                        value: header(&resp, "content-range").unwrap_or_default(),
                        context: format!("GET {url} from offset {offset}"),
                    });
                }
                Ok((Box::new(resp.into_body().into_reader()), 0))
            }
            _ => Err(match target {
                Some(t) => self.status_error(t, "GET", &url, resp, &format!("blob {digest}")),
                None => {
                    let detail = read_error_body(resp);
                    Error::Status {
                        method: "GET",
                        url,
                        status,
                        detail,
                    }
                }
            }),
        }
    }

    fn fetch_manifest_at(&self, t: &Target, reference: &Reference) -> Result<Manifest> {
        let tag_or_digest = manifest_ref(reference);
        let url = t.url(&format!("manifests/{tag_or_digest}"));
        let resp = self.request(
            t,
            &[pull_scope(t)],
            "GET",
            &url,
            &[("Accept", MANIFEST_ACCEPT)],
            ReqBody::Empty,
        )?;
        if resp.status().as_u16() != 200 {
            return Err(self.status_error(
                t,
                "GET",
                &url,
                resp,
                &format!("manifest {tag_or_digest}"),
            ));
        }
        let content_type = header(&resp, "content-type");
        let announced = header(&resp, "docker-content-digest");
        let what = format!("manifest {reference}");
        let bytes = read_body(resp, MANIFEST_SIZE_LIMIT, &url, &what)?;
        let digest = if let Some(want) = reference.digest() {
            let actual = digest_of(want.algorithm(), &bytes);
            if &actual != want {
                return Err(Error::DigestMismatch {
                    what,
                    expected: want.clone(),
                    actual,
                });
            }
            want.clone()
        } else {
            if let Some(value) = announced {
                let announced = Digest::parse(value.trim()).map_err(|_| Error::InvalidHeader {
                    registry: t.registry.clone(),
                    header: "Docker-Content-Digest",
                    value: value.clone(),
                    context: format!("GET {url}"),
                })?;
                let actual = digest_of(announced.algorithm(), &bytes);
                if actual != announced {
                    return Err(Error::DigestMismatch {
                        what: format!("{what} (Docker-Content-Digest)"),
                        expected: announced,
                        actual,
                    });
                }
            }
            sha256_digest(&bytes)
        };
        let (media_type, kind) =
            manifest::parse(&bytes, content_type.as_deref(), &reference.to_string())?;
        tracing::debug!(%reference, %digest, media_type, "fetched manifest");
        Ok(Manifest {
            digest,
            media_type,
            bytes,
            kind,
        })
    }

    /// Runs `f` against the mirrors (for docker.io) and then the registry itself, returning
    /// the first success, or the registry's own error.
    fn with_pull_endpoints<T>(
        &self,
        reference: &Reference,
        mut f: impl FnMut(&Target) -> Result<T>,
    ) -> Result<T> {
        let registry = reference.registry();
        let mut specs = Vec::new();
        if registry == DEFAULT_REGISTRY {
            for m in &self.inner.mirrors {
                specs.push(EndpointSpec {
                    key: m.clone(),
                    bases: vec![m.clone()],
                    host: url_host(m).unwrap_or_default(),
                });
            }
        }
        specs.push(self.registry_spec(registry));
        let last = specs.len() - 1;
        for (i, spec) in specs.iter().enumerate() {
            let result = self.host_state(spec).and_then(|state| {
                f(&Target {
                    state,
                    registry: registry.to_owned(),
                    repository: reference.repository().to_owned(),
                })
            });
            match result {
                Err(e) if i < last => {
                    tracing::debug!(mirror = spec.key, error = %e, "mirror failed, trying the next endpoint");
                }
                other => return other,
            }
        }
        unreachable!("the registry itself is always the last endpoint")
    }

    /// The registry itself (no mirrors), for pushes.
    pub(crate) fn push_target(&self, reference: &Reference) -> Result<Target> {
        let spec = self.registry_spec(reference.registry());
        Ok(Target {
            state: self.host_state(&spec)?,
            registry: reference.registry().to_owned(),
            repository: reference.repository().to_owned(),
        })
    }

    fn registry_spec(&self, registry: &str) -> EndpointSpec {
        let host = api_host(registry);
        let mut bases = vec![format!("https://{host}")];
        if self.is_insecure(registry) {
            bases.push(format!("http://{host}"));
        }
        EndpointSpec {
            key: host.clone(),
            bases,
            host,
        }
    }

    /// Whether plain HTTP may be used for `registry` (`host[:port]`).
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = host_part(registry);
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        let ip = host.parse::<IpAddr>().ok();
        if let Some(ip) = ip {
            let loopback = match ip {
                IpAddr::V4(v4) => v4.is_loopback(),
                IpAddr::V6(v6) => {
                    v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                }
            };
            if loopback {
                return true;
            }
        }
        self.inner.config.insecure_registries.iter().any(|entry| {
            let entry = entry
                .trim()
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            entry == registry || entry == host || ip.is_some_and(|ip| cidr_contains(entry, ip))
        })
    }

    fn host_state(&self, spec: &EndpointSpec) -> Result<Arc<HostState>> {
        if let Some(st) = self.inner.hosts.lock().expect("hosts lock").get(&spec.key) {
            return Ok(st.clone());
        }
        let st = Arc::new(self.ping(spec)?);
        Ok(self
            .inner
            .hosts
            .lock()
            .expect("hosts lock")
            .entry(spec.key.clone())
            .or_insert(st)
            .clone())
    }

    /// `GET /v2/` on each candidate base until one answers: that fixes the scheme and tells
    /// how to authenticate. An answer other than 200 or 401 is taken (as no auth) only from
    /// the first base: from the plain-HTTP fallback it more likely means an HTTPS server
    /// refusing plain HTTP, and the HTTPS error is the one worth reporting.
    fn ping(&self, spec: &EndpointSpec) -> Result<HostState> {
        let mut first_err = None;
        for (i, base) in spec.bases.iter().enumerate() {
            let url = format!("{base}/v2/");
            let resp = match self.send(&spec.host, "GET", &url, &[], ReqBody::Empty, None) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(url, error = %e, "ping failed");
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let auth = match status {
                401 => challenge_of(&resp, &spec.host)?,
                200 => AuthScheme::Anonymous,
                _ if i == 0 => {
                    tracing::debug!(url, status, "unexpected ping answer; assuming no auth");
                    AuthScheme::Anonymous
                }
                _ => {
                    tracing::debug!(url, status, "unexpected ping answer from the fallback");
                    let detail = read_error_body(resp);
                    first_err.get_or_insert(Error::Status {
                        method: "GET",
                        url,
                        status,
                        detail,
                    });
                    continue;
                }
            };
            tracing::debug!(base, ?auth, "registry endpoint");
            return Ok(HostState {
                base: base.clone(),
                host: spec.host.clone(),
                auth: Mutex::new(auth),
                tokens: Mutex::new(HashMap::new()),
            });
        }
        Err(first_err.expect("at least one base URL"))
    }

    /// Sends an authenticated request for `scopes`; on a 401 it refreshes the token (or
    /// learns the challenge) and retries once if the body can be sent again.
    pub(crate) fn request(
        &self,
        t: &Target,
        scopes: &[String],
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        body: ReqBody<'_>,
    ) -> Result<Response<Body>> {
        let replayable = body.replayable();
        let auth = self.auth_header(t, scopes, false)?;
        let (first_body, second_body) = match body {
            ReqBody::Empty => (ReqBody::Empty, Some(ReqBody::Empty)),
            ReqBody::Bytes(b) => (ReqBody::Bytes(b), Some(ReqBody::Bytes(b))),
            r @ ReqBody::Reader(_) => (r, None),
        };
        let resp = self.send(&t.state.host, method, url, headers, first_body, auth)?;
        if resp.status().as_u16() != 401 || !replayable {
            return Ok(resp);
        }
        // Learn the challenge if the registry let /v2/ through but wants auth here.
        let challenged = challenge_of(&resp, &t.state.host).ok();
        {
            let mut scheme = t.state.auth.lock().expect("auth lock");
            match (&*scheme, challenged) {
                (AuthScheme::Bearer { .. }, _) => {}
                (_, Some(new @ AuthScheme::Bearer { .. })) => *scheme = new,
                (AuthScheme::Anonymous, Some(new)) => *scheme = new,
                _ => return Ok(resp),
            }
        }
        tracing::debug!(url, "401: fetching a new token and retrying");
        let auth = self.auth_header(t, scopes, true)?;
        self.send(
            &t.state.host,
            method,
            url,
            headers,
            second_body.unwrap_or(ReqBody::Empty),
            auth,
        )
    }

    fn auth_header(&self, t: &Target, scopes: &[String], force: bool) -> Result<Option<String>> {
        let scheme = t.state.auth.lock().expect("auth lock").clone();
        match scheme {
            AuthScheme::Anonymous => Ok(None),
            AuthScheme::Basic => Ok(self
                .credential(&t.state.host)
                .as_ref()
                .and_then(basic_header)),
            AuthScheme::Bearer { realm, service } => {
                let key = scopes.join(" ");
                if !force {
                    let tokens = t.state.tokens.lock().expect("tokens lock");
                    if let Some(tok) = tokens.get(&key).filter(|tok| tok.is_fresh(Instant::now())) {
                        return Ok(Some(format!("Bearer {}", tok.value)));
                    }
                }
                let cred = self.credential(&t.state.host);
                let tok = self.fetch_token(t, &realm, service.as_deref(), scopes, cred.as_ref())?;
                let header = format!("Bearer {}", tok.value);
                t.state.tokens.lock().expect("tokens lock").insert(key, tok);
                Ok(Some(header))
            }
        }
    }

    fn credential(&self, host: &str) -> Option<Credential> {
        let registry = if host == DOCKER_HUB_API_HOST {
            DEFAULT_REGISTRY
        } else {
            host
        };
        self.inner
            .creds
            .read()
            .expect("credentials lock")
            .get(registry)
            .cloned()
    }

    /// Gets a token: `GET realm?service&scope` (with basic credentials if any), or the
    /// OAuth2 `POST` form for an identity token or when the server does not serve `GET`.
    fn fetch_token(
        &self,
        t: &Target,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        cred: Option<&Credential>,
    ) -> Result<Token> {
        let mut query: Vec<String> = Vec::new();
        if let Some(s) = service {
            query.push(format!("service={}", enc(s)));
        }
        for s in scopes {
            query.push(format!("scope={}", enc(s)));
        }
        let realm_host = url_host(realm).unwrap_or_default();
        let post = |fields: Vec<(&str, &str)>| -> Result<Response<Body>> {
            let mut form: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{k}={}", enc(v)))
                .collect();
            form.push("client_id=skiff".to_owned());
            if let Some(s) = service {
                form.push(format!("service={}", enc(s)));
            }
            if !scopes.is_empty() {
                form.push(format!("scope={}", enc(&scopes.join(" "))));
            }
            let form = form.join("&");
            self.send(
                &realm_host,
                "POST",
                realm,
                &[("Content-Type", "application/x-www-form-urlencoded")],
                ReqBody::Bytes(form.as_bytes()),
                None,
            )
        };
        let resp = match cred {
            Some(Credential::IdentityToken { token, .. }) => post(vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
            ])?,
            _ => {
                if let Some(Credential::Basic { username, .. }) = cred {
                    query.push(format!("account={}", enc(username)));
                }
                let sep = if realm.contains('?') { '&' } else { '?' };
                let url = if query.is_empty() {
                    realm.to_owned()
                } else {
                    format!("{realm}{sep}{}", query.join("&"))
                };
                let resp = self.send(
                    &realm_host,
                    "GET",
                    &url,
                    &[],
                    ReqBody::Empty,
                    cred.and_then(basic_header),
                )?;
                match (resp.status().as_u16(), cred) {
                    (404 | 405, Some(Credential::Basic { username, password })) => post(vec![
                        ("grant_type", "password"),
                        ("username", username),
                        ("password", password),
                    ])?,
                    _ => resp,
                }
            }
        };
        let status = resp.status().as_u16();
        let scope = scopes.join(" ");
        if status == 401 || status == 403 {
            return Err(Error::Unauthorized {
                registry: t.registry.clone(),
                repository: t.repository.clone(),
                status,
                detail: read_error_body(resp),
            });
        }
        if status != 200 {
            return Err(Error::Token {
                realm: realm.to_owned(),
                scope,
                status,
                detail: read_error_body(resp),
            });
        }
        let body = read_body(resp, TOKEN_BODY_LIMIT, realm, "token response")?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| Error::Token {
            realm: realm.to_owned(),
            scope: scope.clone(),
            status,
            detail: format!(": the answer is not a token response: {e}"),
        })?;
        if parsed.refresh_token.is_some() {
            tracing::debug!("the token server offered a refresh token; not stored");
        }
        tracing::debug!(realm, scope, "got a token");
        Token::from_response(parsed, Instant::now()).ok_or_else(|| Error::Token {
            realm: realm.to_owned(),
            scope,
            status,
            detail: ": the answer has no token".to_owned(),
        })
    }

    /// One HTTP exchange, no auth logic.
    pub(crate) fn send(
        &self,
        host: &str,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        body: ReqBody<'_>,
        auth: Option<String>,
    ) -> Result<Response<Body>> {
        let agent = self.agent_for(host);
        let mut b = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        let http_err = |source: ureq::Error| Error::Http {
            method,
            url: url.to_owned(),
            source: Box::new(source),
        };
        tracing::trace!(method, url, "request");
        let result = match body {
            ReqBody::Empty => agent.run(b.body(()).map_err(|e| http_err(e.into()))?),
            ReqBody::Bytes(bytes) => agent.run(b.body(bytes).map_err(|e| http_err(e.into()))?),
            ReqBody::Reader(r) => agent.run(
                b.body(SendBody::from_reader(r))
                    .map_err(|e| http_err(e.into()))?,
            ),
        };
        let resp = result.map_err(http_err)?;
        tracing::debug!(method, url, status = resp.status().as_u16(), "response");
        Ok(resp)
    }

    /// The agent for `host`: the shared one, or one that also trusts the CA files of
    /// `<certs_dir>/<host>/`.
    fn agent_for(&self, host: &str) -> Agent {
        let Some(dir) = &self.inner.config.certs_dir else {
            return self.inner.default_agent.clone();
        };
        if let Some(a) = self.inner.agents.lock().expect("agents lock").get(host) {
            return a.clone();
        }
        let extra = extra_cas(&dir.join(host));
        let agent = if extra.is_empty() {
            self.inner.default_agent.clone()
        } else {
            tracing::debug!(host, count = extra.len(), "trusting extra CA certificates");
            build_agent(&self.inner.config, &self.inner.roots, &extra)
        };
        self.inner
            .agents
            .lock()
            .expect("agents lock")
            .insert(host.to_owned(), agent.clone());
        agent
    }

    /// Turns an unexpected answer into an error: 404 and `*_UNKNOWN` codes into
    /// [`Error::NotFound`], 401/403 into [`Error::Unauthorized`].
    pub(crate) fn status_error(
        &self,
        t: &Target,
        method: &'static str,
        url: &str,
        resp: Response<Body>,
        what: &str,
    ) -> Error {
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let bytes = body
            .with_config()
            .limit(ERROR_BODY_LIMIT)
            .read_to_vec()
            .unwrap_or_default();
        let detail = error_detail(&bytes);
        let codes = error_codes(&bytes);
        let unknown = codes.iter().any(|c| {
            matches!(
                c.as_str(),
                "MANIFEST_UNKNOWN" | "BLOB_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UPLOAD_UNKNOWN"
            )
        });
        if status == 404 || (unknown && status < 500) {
            return Error::NotFound {
                registry: t.registry.clone(),
                repository: t.repository.clone(),
                what: what.to_owned(),
                status,
                detail,
            };
        }
        if status == 401 || status == 403 {
            return Error::Unauthorized {
                registry: t.registry.clone(),
                repository: t.repository.clone(),
                status,
                detail,
            };
        }
        Error::Status {
            method,
            url: url.to_owned(),
            status,
            detail,
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) fn pull_scope(t: &Target) -> String {
    format!("repository:{}:pull", t.repository)
}

pub(crate) fn push_scope(t: &Target) -> String {
    format!("repository:{}:pull,push", t.repository)
}

/// The manifest path component: digest if any, else tag, else `latest`.
pub(crate) fn manifest_ref(reference: &Reference) -> String {
    match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => skiff_reference::DEFAULT_TAG.to_owned(),
    }
}

pub(crate) fn descriptor_digest(d: &Descriptor, context: &str) -> Result<Digest> {
    Digest::parse(d.digest().as_ref()).map_err(|e| Error::InvalidManifest {
        reference: context.to_owned(),
        media_type: d.media_type().to_string(),
        reason: format!("descriptor digest {}: {e}", d.digest()),
    })
}

fn challenge_of(resp: &Response<Body>, host: &str) -> Result<AuthScheme> {
    let values: Vec<String> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let invalid = |header: String, reason: String| Error::InvalidChallenge {
        registry: host.to_owned(),
        header,
        reason,
    };
    if values.is_empty() {
        return Err(invalid(
            String::new(),
            "the 401 answer has no WWW-Authenticate header".into(),
        ));
    }
    let mut all = Vec::new();
    for v in &values {
        all.extend(auth::parse_challenges(v).map_err(|r| invalid(v.clone(), r))?);
    }
    auth::scheme_from_challenges(&all).map_err(|r| invalid(values.join(", "), r))
}

fn basic_header(cred: &Credential) -> Option<String> {
    match cred {
        Credential::Basic { username, password } => Some(format!(
            "Basic {}",
            BASE64.encode(format!("{username}:{password}"))
        )),
        Credential::IdentityToken { .. } => None,
    }
}

pub(crate) fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub(crate) fn read_body(
    resp: Response<Body>,
    limit: u64,
    url: &str,
    what: &str,
) -> Result<Vec<u8>> {
    let mut body = resp.into_body();
    body.with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => Error::TooLarge {
                what: what.to_owned(),
                limit,
            },
            ureq::Error::Io(source) => Error::Read {
                url: url.to_owned(),
                source,
            },
            other => Error::Http {
                method: "GET",
                url: url.to_owned(),
                source: Box::new(other),
            },
        })
}

pub(crate) fn read_error_body(resp: Response<Body>) -> String {
    let mut body = resp.into_body();
    error_detail(
        &body
            .with_config()
            .limit(ERROR_BODY_LIMIT)
            .read_to_vec()
            .unwrap_or_default(),
    )
}

/// `docker.io`, `index.docker.io`, `https://index.docker.io/v1/` → `docker.io`; a URL →
/// its `host:port`.
fn normalize_registry(registry: &str) -> String {
    let rest = registry
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" | "" => {
            DEFAULT_REGISTRY.to_owned()
        }
        h => h.to_owned(),
    }
}

fn api_host(registry: &str) -> String {
    if registry == DEFAULT_REGISTRY {
        DOCKER_HUB_API_HOST.to_owned()
    } else {
        registry.to_owned()
    }
}

/// `host:port` → `host`; `[::1]:5000` → `::1`.
fn host_part(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    }
}

/// `https://host:port/path` → `host:port`.
pub(crate) fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    (!authority.is_empty()).then(|| authority.to_owned())
}

/// Resolves a `Location` header against the URL of the request it answered.
pub(crate) fn resolve_location(request_url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let (scheme, rest) = request_url
        .split_once("://")
        .unwrap_or(("https", request_url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    if location.starts_with("//") {
        return format!("{scheme}:{location}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = request_url.split('?').next().unwrap_or(request_url);
    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or(path);
    format!("{dir}/{location}")
}

fn cidr_contains(entry: &str, ip: IpAddr) -> bool {
    let Some((net, bits)) = entry.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

fn load_creds(config: &Config) -> Result<CredentialStore> {
    match credentials::docker_config_dir(config.docker_config_dir.as_deref()) {
        Some(dir) => CredentialStore::load(&dir),
        None => Ok(CredentialStore::default()),
    }
}

/// The system's CA roots, as Go finds them on Linux (`SSL_CERT_FILE`, then the usual
/// bundle files); empty if none was found (then the bundled Mozilla roots are used).
fn system_roots() -> &'static [Certificate<'static>] {
    static ROOTS: OnceLock<Vec<Certificate<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut files: Vec<PathBuf> = Vec::new();
        if let Some(f) = std::env::var_os("SSL_CERT_FILE") {
            files.push(f.into());
        }
        files.extend(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/ca-bundle.pem",
                "/etc/pki/tls/cacert.pem",
                "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from),
        );
        for f in files {
            let certs = pem_certs(&f);
            if !certs.is_empty() {
                tracing::debug!(file = %f.display(), count = certs.len(), "system CA roots");
                return certs;
            }
        }
        Vec::new()
    })
}

fn pem_certs(path: &Path) -> Vec<Certificate<'static>> {
    let Ok(data) = fs::read(path) else {
        return Vec::new();
    };
    ureq::tls::parse_pem(&data)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// The `*.crt` files of a certs.d folder.
fn extra_cas(dir: &Path) -> Vec<Certificate<'static>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .collect();
    paths.sort();
    paths.iter().flat_map(|p| pem_certs(p)).collect()
}

fn build_agent(
    config: &Config,
    roots: &[Certificate<'static>],
    extra: &[Certificate<'static>],
) -> Agent {
    let root_certs = if roots.is_empty() && extra.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::new_with_certs(&[roots, extra].concat())
    };
    Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(config.user_agent.as_str())
        .max_redirects(10)
        .redirect_auth_headers(RedirectAuthHeaders::SameHost)
        .timeout_connect(Some(config.connect_timeout))
        .timeout_per_read(Some(config.read_timeout))
        .tls_config(TlsConfig::builder().root_certs(root_certs).build())
        .build()
        .new_agent()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_rules() {
        let c = Client::new(Config {
            insecure_registries: vec!["myreg:5000".into(), "other".into(), "10.1.0.0/16".into()],
            docker_config_dir: Some("/nonexistent".into()),
            ..Config::default()
        })
        .unwrap();
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.9.9.9",
            "[::1]:5000",
            "myreg:5000",
            "other:1234",
            "10.1.2.3:5000",
        ] {
            assert!(c.is_insecure(r), "{r}");
        }
        for r in [
            "docker.io",
            "myreg",
            "myreg:5001",
            "10.2.0.1",
            "example.com",
        ] {
            assert!(!c.is_insecure(r), "{r}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            url_host("https://a.b:5000/v2/x?y").as_deref(),
            Some("a.b:5000")
        );
        assert_eq!(url_host("http://u:p@h/x").as_deref(), Some("h"));
        assert_eq!(url_host("nope"), None);
        assert_eq!(
            resolve_location(
                "http://h:1/v2/a/blobs/uploads/",
                "/v2/a/blobs/uploads/u?_state=s"
            ),
            "http://h:1/v2/a/blobs/uploads/u?_state=s"
        );
        assert_eq!(
            resolve_location("http://h/v2/x", "https://s3/x"),
            "https://s3/x"
        );
        assert_eq!(resolve_location("http://h/v2/a/b", "c"), "http://h/v2/a/c");
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(normalize_registry("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(host_part("[::1]:5000"), "::1");
        assert_eq!(host_part("h:5000"), "h");
        assert_eq!(
            enc("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }

    #[test]
    fn bad_mirror_rejected() {
        let err = Client::new(Config {
            mirrors: vec!["mirror.example".into()],
            ..Config::default()
        })
        .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    }

    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::blob::tests::{test_client, Answer, TestServer};

    fn answer(status: u16, headers: Vec<(String, String)>, body: &[u8]) -> Answer {
        Answer {
            status,
            headers,
            body: body.to_vec(),
            cut_after: None,
        }
    }

    #[test]
    fn token_is_refreshed_on_401() {
        let issued = AtomicUsize::new(0);
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}"#;
        let server = TestServer::start(Box::new(move |_, path, headers| {
            let get = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let challenge = vec![(
                "WWW-Authenticate".to_owned(),
                format!(
                    r#"Bearer realm="http://{}/token",service="svc""#,
                    get("host")
                ),
            )];
            if path.starts_with("/token?") {
                let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(path.contains("service=svc"), "{path}");
                assert!(path.contains("scope=repository%3At%2Fr%3Apull"), "{path}");
                return answer(
                    200,
                    vec![],
                    format!(r#"{{"token":"tok{n}","expires_in":300}}"#).as_bytes(),
                );
            }
            match (path, get("authorization").as_str()) {
                (_, "Bearer tok2") if path.starts_with("/v2/t/r/manifests/") => answer(
                    200,
                    vec![("Content-Type".into(), crate::OCI_MANIFEST.into())],
                    manifest,
                ),
                // tok1 is "revoked": the registry wants a new one
                _ => answer(
                    401,
                    challenge,
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                ),
            }
        }));
        let client = test_client();
        let reference = Reference::parse(&format!("{}/t/r:1", server.addr)).unwrap();
        let m = client.fetch_manifest(&reference).unwrap();
        assert_eq!(m.digest, sha256_digest(manifest));
        let log = server.log.lock().unwrap().clone();
        let tokens = log.iter().filter(|l| l.starts_with("GET /token")).count();
        assert_eq!(tokens, 2, "{log:?}");
        // a third token is not needed while tok2 is fresh
        client.fetch_manifest(&reference).unwrap();
        let log = server.log.lock().unwrap().clone();
        assert_eq!(
            log.iter().filter(|l| l.starts_with("GET /token")).count(),
            2,
            "{log:?}"
        );
    }

    /// A registry whose token server serves only the OAuth2 POST form.
    fn oauth_only_server() -> TestServer {
        TestServer::start(Box::new(|method, path, headers| {
            let get = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            match (method, path) {
                ("GET", p) if p.starts_with("/token") => answer(405, vec![], b""),
                ("POST", "/token") => {
                    answer(200, vec![], br#"{"access_token":"oauth","expires_in":60}"#)
                }
                (_, p)
                    if p.starts_with("/v2/t/r/tags/list")
                        && get("authorization") == "Bearer oauth" =>
                {
                    answer(200, vec![], br#"{"name":"t/r","tags":["a","b"]}"#)
                }
                _ => answer(
                    401,
                    vec![(
                        "WWW-Authenticate".to_owned(),
                        format!(
                            r#"Bearer realm="http://{}/token",service="svc""#,
                            get("host")
                        ),
                    )],
                    b"",
                ),
            }
        }))
    }

    #[test]
    fn oauth2_post_form_for_passwords_and_identity_tokens() {
        for cred in [
            Credential::Basic {
                username: "u".into(),
                password: "p w".into(),
            },
            Credential::IdentityToken {
                username: String::new(),
                token: "refresh-me".into(),
            },
        ] {
            let server = oauth_only_server();
            let client = test_client();
            client.set_credential(&server.addr.to_string(), cred.clone());
            let repo = Reference::parse(&format!("{}/t/r", server.addr)).unwrap();
            assert_eq!(client.list_tags(&repo).unwrap(), ["a", "b"]);
            let log = server.log.lock().unwrap().clone();
            let post = log.iter().find(|l| l.starts_with("POST /token")).unwrap();
            let common = "client_id=skiff&service=svc&scope=repository%3At%2Fr%3Apull";
            match cred {
                Credential::Basic { .. } => {
                    assert!(log.iter().any(|l| l.starts_with("GET /token?")), "{log:?}");
                    assert!(
                        post.ends_with(&format!(
                            "body=grant_type=password&username=u&password=p%20w&{common}"
                        )),
                        "{post}"
                    );
                }
                Credential::IdentityToken { .. } => {
                    // no GET: identity tokens go straight to the OAuth2 form
                    assert!(!log.iter().any(|l| l.starts_with("GET /token")), "{log:?}");
                    assert!(
                        post.ends_with(&format!(
                            "body=grant_type=refresh_token&refresh_token=refresh-me&{common}"
                        )),
                        "{post}"
                    );
                }
            }
        }
    }

    #[test]
    fn unauthorized_is_reported_with_the_registry_message() {
        let server = TestServer::start(Box::new(|_, path, _| {
            if path == "/v2/" {
                return answer(200, vec![], b"{}");
            }
            answer(403, vec![], br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#)
        }));
        let client = test_client();
        let reference = Reference::parse(&format!("{}/t/r:1", server.addr)).unwrap();
        let err = client.fetch_manifest(&reference).unwrap_err();
        assert!(err.is_unauthorized(), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("t/r") && msg.contains("403") && msg.contains("DENIED: requested access"),
            "{msg}"
        );
    }

    #[test]
    fn foreign_layer_comes_from_its_urls() {
        let data = b"foreign layer bytes".to_vec();
        let served = data.clone();
        let server = TestServer::start(Box::new(move |_, path, _| match path {
            "/v2/" => answer(200, vec![], b"{}"),
            "/foreign/layer.tar.gz" => answer(200, vec![], &served),
            _ => answer(
                404,
                vec![],
                br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
            ),
        }));
        let client = test_client();
        let repo = Reference::parse(&format!("{}/win/base", server.addr)).unwrap();
        let desc: Descriptor = serde_json::from_value(serde_json::json!({
            "mediaType": crate::DOCKER_FOREIGN_LAYER,
            "digest": sha256_digest(&data).to_string(),
            "size": data.len(),
            "urls": ["ftp://ignored", format!("http://{}/foreign/layer.tar.gz", server.addr)],
        }))
        .unwrap();
        let mut out = Vec::new();
        client
            .fetch_blob(&repo, &desc)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        // an ordinary layer does not fall back to urls
        let mut plain = desc.clone();
        plain.set_media_type("application/vnd.oci.image.layer.v1.tar+gzip".into());
        assert!(client.fetch_blob(&repo, &plain).unwrap_err().is_not_found());
    }

    #[test]
    fn client_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Client>();
    }
}
