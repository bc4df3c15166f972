//! The crate's error type and the parsing of registry error bodies.

use std::io;
use std::path::PathBuf;

use serde::Deserialize;
use skiff_reference::Digest;

/// Everything that can go wrong talking to a registry.
///
/// [`Error::NotFound`] and [`Error::Unauthorized`] are the two a daemon maps to its own
/// status codes (404 and 401/403); [`Error::is_not_found`] and [`Error::is_unauthorized`]
/// also see through an [`io::Error`] returned by a [`crate::BlobReader`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry does not have the manifest, blob or repository (HTTP 404, or an error
    /// code such as `MANIFEST_UNKNOWN`).
    #[error(
        "{what} was not found in repository {repository} on {registry} (HTTP {status}){detail}"
    )]
    NotFound {
        /// The registry host (`docker.io`, `127.0.0.1:5000`).
        registry: String,
        /// The repository path.
        repository: String,
        /// What was asked for: `manifest latest`, `blob sha256:...`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error codes and messages, formatted as `: CODE: message`.
        detail: String,
    },
    /// The registry or its token server refused the credentials, or there were none and the
    /// repository is private (HTTP 401 or 403).
    #[error(
        "access to {} was denied (HTTP {status}){detail}; check the credentials (skiff login) \
         and that the repository exists",
        place(registry, repository)
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The repository path (empty for a login or a ping).
        repository: String,
        /// The HTTP status.
        status: u16,
        /// The server's error codes and messages.
        detail: String,
    },
    /// The registry answered with a status this client does not expect for the request.
    #[error("{method} {url} failed with HTTP {status}{detail}")]
    Status {
        /// The HTTP method.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error codes and messages.
        detail: String,
    },
    /// No HTTP answer at all: DNS, connection, TLS, timeout or protocol failure.
    #[error("{method} {url} failed")]
    Http {
        /// The HTTP method.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// What the HTTP client reported.
        #[source]
        source: Box<ureq::Error>,
    },
    /// Reading a response body failed.
    #[error("reading the response to {url} failed")]
    Read {
        /// The URL requested.
        url: String,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The token server refused to issue a token, or answered with something unusable.
    #[error(
        "the token server {realm} did not issue a token for {scope:?} (HTTP {status}){detail}"
    )]
    Token {
        /// The token endpoint.
        realm: String,
        /// The scopes asked for.
        scope: String,
        /// The HTTP status (0 if the answer was not valid JSON).
        status: u16,
        /// The server's error, or why the answer could not be used.
        detail: String,
    },
    /// A `WWW-Authenticate` header this client cannot use.
    #[error("{registry} sent an invalid WWW-Authenticate challenge {header:?}: {reason}")]
    InvalidChallenge {
        /// The registry host.
        registry: String,
        /// The header as received.
        header: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Content did not hash to the digest it was fetched or announced by.
    #[error(
        "{what} has digest {actual}, expected {expected}: the content is corrupt and was discarded"
    )]
    DigestMismatch {
        /// What was checked: `blob sha256:... of 127.0.0.1:5000/app`.
        what: String,
        /// The digest it must have.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// Content had another size than its descriptor says.
    #[error("{what} is {actual} bytes long, expected {expected}: the content was discarded")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// The size from the descriptor.
        expected: u64,
        /// The size received (so far, if longer than expected).
        actual: u64,
    },
    /// A manifest or config is larger than this client accepts.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge {
        /// What was fetched.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A manifest or index that cannot be parsed.
    #[error("manifest {reference} is not valid ({media_type}): {reason}")]
    InvalidManifest {
        /// The reference it was fetched by.
        reference: String,
        /// Its media type.
        media_type: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A Docker image manifest schema 1, which Docker itself no longer pulls.
    #[error(
        "manifest {reference} is a Docker image manifest schema 1 ({media_type}), which is \
         deprecated and not supported; push the image again with a current tool to convert it"
    )]
    Schema1 {
        /// The reference it was fetched by.
        reference: String,
        /// Its media type.
        media_type: String,
    },
    /// A manifest of a media type that is neither an image manifest nor an index.
    #[error("manifest {reference} has the unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The reference it was fetched by.
        reference: String,
        /// Its media type.
        media_type: String,
    },
    /// An index or manifest list has no manifest for the platform asked for.
    #[error(
        "no matching manifest for {wanted} in the manifest list {reference}; it has: {available}"
    )]
    NoMatchingPlatform {
        /// The reference of the index.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index offers, comma-separated.
        available: String,
    },
    /// A platform string such as `linux/arm64/v8` that cannot be parsed.
    #[error("invalid platform {input:?}: must be os[/architecture[/variant]]")]
    InvalidPlatform {
        /// The string as given.
        input: String,
    },
    /// The registry sent a digest header or location this client cannot use.
    #[error("{registry} sent an invalid {header} header {value:?} for {context}")]
    InvalidHeader {
        /// The registry host.
        registry: String,
        /// The header name.
        header: &'static str,
        /// The header's value.
        value: String,
        /// The request it answered.
        context: String,
    },
    /// The Docker client configuration file cannot be read or written.
    #[error("cannot {action} the Docker client configuration {path}")]
    DockerConfigIo {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The Docker client configuration file is not valid.
    #[error("the Docker client configuration {path} is not valid: {reason}")]
    DockerConfigInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An invalid [`crate::Config`] value (mirror URL, CA file).
    #[error("invalid registry client configuration: {0}")]
    InvalidConfig(String),
}

impl Error {
    /// Whether this is [`Error::NotFound`], directly or inside an [`io::Error`] from a
    /// [`crate::BlobReader`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether this is [`Error::Unauthorized`].
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Error::Unauthorized { .. })
    }

    /// The [`Error`] inside an [`io::Error`] returned by a [`crate::BlobReader`], if any.
    pub fn from_io(err: &io::Error) -> Option<&Error> {
        err.get_ref().and_then(|e| e.downcast_ref::<Error>())
    }

    pub(crate) fn into_io(self) -> io::Error {
        let kind = match &self {
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => io::ErrorKind::InvalidData,
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::Unauthorized { .. } => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }
}

fn place(registry: &str, repository: &str) -> String {
    if repository.is_empty() {
        format!("registry {registry}")
    } else {
        format!("repository {repository} on {registry}")
    }
}

/// A crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
    // Token servers (OAuth2) answer `{"error": "...", "error_description": "..."}`.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    details: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The registry error codes of a body (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`, ...).
pub(crate) fn error_codes(body: &[u8]) -> Vec<String> {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.errors.into_iter().map(|e| e.code).collect())
        .unwrap_or_default()
}

/// Formats a registry error body (`{"errors":[{"code","message","detail"}]}`) or an OAuth2
/// error as `: CODE: message; CODE: message`, or a short plain-text body as `: text`.
/// Empty when there is nothing useful.
pub(crate) fn error_detail(body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        let mut parts: Vec<String> = parsed
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                (true, _) => e.message.clone(),
            })
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(err) = parsed.error {
            parts.push(match parsed.error_description.or(parsed.details) {
                Some(d) => format!("{err}: {d}"),
                None => err,
            });
        }
        return if parts.is_empty() {
            String::new()
        } else {
            format!(": {}", parts.join("; "))
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text.starts_with('<') {
        // Nothing, or an HTML page from a proxy: not worth repeating.
        return String::new();
    }
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push_str("...");
    }
    format!(": {}", short.replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_body() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}},
                       {"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#;
        assert_eq!(
            error_detail(body),
            ": MANIFEST_UNKNOWN: manifest unknown; NAME_UNKNOWN: repository name not known to registry"
        );
        assert_eq!(error_codes(body), ["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
    }

    #[test]
    fn oauth_and_text_bodies() {
        assert_eq!(
            error_detail(br#"{"error":"invalid_grant","error_description":"bad password"}"#),
            ": invalid_grant: bad password"
        );
        assert_eq!(error_detail(b"{}"), "");
        assert_eq!(error_detail(b""), "");
        assert_eq!(error_detail(b"<html>bad gateway</html>"), "");
        assert_eq!(
            error_detail(b"blob unknown to registry\n"),
            ": blob unknown to registry"
        );
        let long = "x".repeat(500);
        assert_eq!(error_detail(long.as_bytes()).len(), 2 + 200 + 3);
    }

    #[test]
    fn io_round_trip() {
        let e = Error::NotFound {
            registry: "r".into(),
            repository: "a".into(),
            what: "blob".into(),
            status: 404,
            detail: String::new(),
        }
        .into_io();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(Error::from_io(&e).unwrap().is_not_found());
        assert_eq!(
            e.to_string(),
            "blob was not found in repository a on r (HTTP 404)"
        );
    }
}
