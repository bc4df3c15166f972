//! Image references: `[registry[:port]/]path[:tag][@digest]`, normalised as Docker does.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Digest, DigestError};

/// The registry a reference without a registry host refers to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag `docker pull` adds to a reference with neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// The host that serves the registry API for `docker.io`.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// Maximum length of the full normalised name (`registry/repository`).
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;

const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const TAG_MAX: usize = 128;

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is the empty string.
    #[error("invalid reference format: the image reference is empty")]
    Empty,
    /// The input is 64 hex characters, which Docker refuses as it looks like an image ID.
    #[error(
        "invalid repository name ({input}), cannot specify 64-byte hexadecimal strings \
         (it looks like an image ID, not a name)"
    )]
    AmbiguousHex {
        /// The offending reference.
        input: String,
    },
    /// The input has a tag or digest but nothing before it.
    #[error("invalid reference format: {input:?} has no repository name")]
    MissingRepository {
        /// The offending reference.
        input: String,
    },
    /// The repository path contains uppercase letters.
    #[error(
        "invalid reference format: repository name ({repository}) must be lowercase \
         (in {input:?})"
    )]
    Uppercase {
        /// The offending reference.
        input: String,
        /// The repository path as written.
        repository: String,
    },
    /// The registry part is not a host name, IP address or `[IPv6]`, with optional `:port`.
    #[error(
        "invalid reference format: registry {registry:?} in {input:?} is not a valid \
         host name, IP address or [IPv6 address], with an optional :port"
    )]
    InvalidRegistry {
        /// The offending reference.
        input: String,
        /// The registry part as written.
        registry: String,
    },
    /// A `/`-separated component of the repository path is malformed.
    #[error(
        "invalid reference format: repository path component {component:?} in {input:?} \
         must be lowercase letters and digits, separated by '.', '_', '__' or dashes"
    )]
    InvalidPathComponent {
        /// The offending reference.
        input: String,
        /// The malformed component (may be empty, e.g. for `a//b`).
        component: String,
    },
    /// The normalised name is longer than [`NAME_TOTAL_LENGTH_MAX`].
    #[error(
        "invalid reference format: repository name must not be more than 255 characters, \
         {name:?} from {input:?} has {len}"
    )]
    NameTooLong {
        /// The offending reference.
        input: String,
        /// The normalised name (`registry/repository`).
        name: String,
        /// Its length.
        len: usize,
    },
    /// The tag is malformed.
    #[error(
        "invalid reference format: tag {tag:?} in {input:?} must be 1 to 128 characters of \
         [A-Za-z0-9_.-], not starting with '.' or '-'"
    )]
    InvalidTag {
        /// The offending reference (or the tag itself, for [`Reference::with_tag`]).
        input: String,
        /// The tag as written.
        tag: String,
    },
    /// The digest after `@` is malformed.
    #[error("invalid reference format: bad digest in {input:?}")]
    InvalidDigest {
        /// The offending reference.
        input: String,
        /// What is wrong with the digest.
        #[source]
        source: DigestError,
    },
}

/// A normalised image reference: registry, repository path, and a tag and/or digest.
///
/// Parsing follows `docker pull`: `busybox` becomes `docker.io/library/busybox:latest`,
/// `index.docker.io` becomes `docker.io`, and `latest` is added only when the input has
/// neither a tag nor a digest. `Display` gives the full normalised form; serde uses it too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference as `docker pull` does.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.is_empty() {
            return Err(Error::Empty);
        }
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::AmbiguousHex {
                input: s.to_owned(),
            });
        }

        // `name[:tag]` before the first '@', the digest after it.
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };
        // A ':' after the last '/' separates the tag; an earlier one belongs to the registry port.
        let last_slash = name_tag.rfind('/');
        let (name, tag) = match name_tag.rfind(':') {
            // (`None < Some(_)`, so a name without '/' takes its last ':' as the tag.)
            Some(colon) if last_slash < Some(colon) => {
                (&name_tag[..colon], Some(&name_tag[colon + 1..]))
            }
            _ => (name_tag, None),
        };
        if name.is_empty() {
            return Err(Error::MissingRepository {
                input: s.to_owned(),
            });
        }

        let (registry, remainder) = split_docker_domain(name);
        if remainder.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Error::Uppercase {
                input: s.to_owned(),
                repository: remainder.to_owned(),
            });
        }
        if !is_domain_and_port(registry) {
            return Err(Error::InvalidRegistry {
                input: s.to_owned(),
                registry: registry.to_owned(),
            });
        }
        if let Some(bad) = remainder.split('/').find(|c| !is_path_component(c)) {
            return Err(Error::InvalidPathComponent {
                input: s.to_owned(),
                component: bad.to_owned(),
            });
        }

        let registry = if registry == LEGACY_DEFAULT_REGISTRY {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !remainder.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{remainder}")
        } else {
            remainder.to_owned()
        };
        let len = registry.len() + 1 + repository.len();
        if len > NAME_TOTAL_LENGTH_MAX {
            return Err(Error::NameTooLong {
                input: s.to_owned(),
                name: format!("{registry}/{repository}"),
                len,
            });
        }

        if let Some(t) = tag {
            if !is_tag(t) {
                return Err(Error::InvalidTag {
                    input: s.to_owned(),
                    tag: t.to_owned(),
                });
            }
        }
        let digest =
            digest
                .map(Digest::parse)
                .transpose()
                .map_err(|source| Error::InvalidDigest {
                    input: s.to_owned(),
                    source,
                })?;
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Reference {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry host, with port if any: `docker.io`, `127.0.0.1:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry: `library/busybox`, `user/app`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The full normalised name without tag or digest: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag, if any (`latest` was added if the input had neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference was given one with `@`.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Docker's short form, as shown by `docker images`: `busybox:latest`, `user/app:1`,
    /// `127.0.0.1:5000/x:y`, with `@digest` appended if present.
    ///
    /// As in Docker, this is ambiguous for a `docker.io` repository whose first component
    /// looks like a host (`docker.io/a.b/c` gives `a.b/c`); use `Display` to store references.
    pub fn familiar(&self) -> String {
        let mut out = if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_owned(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        };
        self.push_tag_digest(&mut out);
        out
    }

    /// The same reference with `tag` (validated) instead of its current tag; a digest is kept.
    pub fn with_tag(&self, tag: &str) -> Result<Self, Error> {
        if !is_tag(tag) {
            return Err(Error::InvalidTag {
                input: tag.to_owned(),
                tag: tag.to_owned(),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_owned()),
            ..self.clone()
        })
    }

    /// The same reference pinned to `digest`; the tag is kept.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Whether Docker treats this registry as insecure (plain HTTP allowed) by default:
    /// `localhost`, 127.0.0.0/8 and `::1`, with any port.
    pub fn is_insecure_default(&self) -> bool {
        let host = registry_host(&self.registry);
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => v4.is_loopback(),
            Ok(IpAddr::V6(v6)) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            Err(_) => false,
        }
    }

    /// The host:port that serves the distribution API: `registry-1.docker.io` for
    /// `docker.io`, the registry itself otherwise.
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The token-auth scope for `action` (`pull`, `push`, `pull,push`):
    /// `repository:library/busybox:pull`.
    pub fn scope(&self, action: &str) -> String {
        format!("repository:{}:{action}", self.repository)
    }

    fn push_tag_digest(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        self.push_tag_digest(&mut out);
        f.write_str(&out)
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// distribution/reference `splitDockerDomain`: the first component is a registry only if it
/// contains '.' or ':', is `localhost`, or has an uppercase letter (repositories cannot).
fn split_docker_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

/// The host part of `host[:port]` / `[v6][:port]`, brackets removed.
fn registry_host(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    registry.split_once(':').map_or(registry, |(h, _)| h)
}

/// `host(:[0-9]+)?` where host is a domain name or `\[[a-fA-F0-9:]+\]`.
fn is_domain_and_port(s: &str) -> bool {
    let (host_ok, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        let v6_ok = !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        };
        (v6_ok, port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        (host.split('.').all(is_domain_component), port)
    };
    // (`Option::is_none_or` needs Rust 1.82; the workspace supports 1.80.)
    let port_ok = match port {
        None => true,
        Some(p) => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
    };
    host_ok && port_ok
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        }
        _ => false,
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        // one run of [a-z0-9]+
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // one separator: '.', '_', '__' or '-'+
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `[\w][\w.-]{0,127}`
fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    match b.first() {
        Some(&f) if word(f) && b.len() <= TAG_MAX => {
            b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    const H64: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn h128() -> String {
        "cf83e1357eefb8bd".repeat(8)
    }

    /// (input, full normalised form, familiar form)
    fn good_cases() -> Vec<(String, String, String)> {
        let d = format!("sha256:{H64}");
        let d512 = format!("sha512:{}", h128());
        let tag128 = format!(
            "A{}",
            "b_.-9".repeat(25).chars().take(127).collect::<String>()
        );
        let long_path = "a".repeat(NAME_TOTAL_LENGTH_MAX - "docker.io/library/".len());
        let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        vec![
            s(
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            s("a", "docker.io/library/a:latest", "a:latest"),
            s(
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            s(
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            s(
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            s(
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            s(
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            s(
                "index.docker.io/user/app:1",
                "docker.io/user/app:1",
                "user/app:1",
            ),
            s("user/app", "docker.io/user/app:latest", "user/app:latest"),
            s("user/app:1", "docker.io/user/app:1", "user/app:1"),
            s(
                "library/a/b",
                "docker.io/library/a/b:latest",
                "library/a/b:latest",
            ),
            s(
                "user/a.b-c_d__e---f/g",
                "docker.io/user/a.b-c_d__e---f/g:latest",
                "user/a.b-c_d__e---f/g:latest",
            ),
            s(
                "localhost",
                "docker.io/library/localhost:latest",
                "localhost:latest",
            ),
            // Docker reads a lone `host:5000` as image `host`, tag `5000`.
            s(
                "localhost:5000",
                "docker.io/library/localhost:5000",
                "localhost:5000",
            ),
            s(
                "example.com:5000",
                "docker.io/library/example.com:5000",
                "example.com:5000",
            ),
            s(
                "localhost/foo",
                "localhost/foo:latest",
                "localhost/foo:latest",
            ),
            s(
                "localhost:5000/foo/bar:v1",
                "localhost:5000/foo/bar:v1",
                "localhost:5000/foo/bar:v1",
            ),
            s(
                "127.0.0.1:5000/a/b:tag",
                "127.0.0.1:5000/a/b:tag",
                "127.0.0.1:5000/a/b:tag",
            ),
            s(
                "127.0.0.1:5000/x:y",
                "127.0.0.1:5000/x:y",
                "127.0.0.1:5000/x:y",
            ),
            s(
                "[::1]:5000/foo:bar",
                "[::1]:5000/foo:bar",
                "[::1]:5000/foo:bar",
            ),
            s(
                "[2001:db8::1]/foo",
                "[2001:db8::1]/foo:latest",
                "[2001:db8::1]/foo:latest",
            ),
            s(
                "example.com/foo",
                "example.com/foo:latest",
                "example.com/foo:latest",
            ),
            s(
                "quay.io/coreos/etcd:v3.5.0",
                "quay.io/coreos/etcd:v3.5.0",
                "quay.io/coreos/etcd:v3.5.0",
            ),
            s(
                "ghcr.io/a/b/c/d:x",
                "ghcr.io/a/b/c/d:x",
                "ghcr.io/a/b/c/d:x",
            ),
            // Registry host names keep their case; an uppercase first component is a host.
            s(
                "Example.COM/foo",
                "Example.COM/foo:latest",
                "Example.COM/foo:latest",
            ),
            s("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
            s(
                "my-registry.local:443/team/app:2",
                "my-registry.local:443/team/app:2",
                "my-registry.local:443/team/app:2",
            ),
            s(
                "user/app:UPPER_tag-1.0",
                "docker.io/user/app:UPPER_tag-1.0",
                "user/app:UPPER_tag-1.0",
            ),
            s("user/app:_x", "docker.io/user/app:_x", "user/app:_x"),
            // `sha256:<hex>` without '@' is image `sha256` with a 64-character tag, as in Docker.
            (
                d.clone(),
                format!("docker.io/library/sha256:{H64}"),
                format!("sha256:{H64}"),
            ),
            (
                format!("busybox@{d}"),
                format!("docker.io/library/busybox@{d}"),
                format!("busybox@{d}"),
            ),
            (
                format!("busybox:1@{d}"),
                format!("docker.io/library/busybox:1@{d}"),
                format!("busybox:1@{d}"),
            ),
            (
                format!("user/app@{d512}"),
                format!("docker.io/user/app@{d512}"),
                format!("user/app@{d512}"),
            ),
            (
                format!("127.0.0.1:5000/a@{d}"),
                format!("127.0.0.1:5000/a@{d}"),
                format!("127.0.0.1:5000/a@{d}"),
            ),
            (
                format!("x:{tag128}"),
                format!("docker.io/library/x:{tag128}"),
                format!("x:{tag128}"),
            ),
            (
                long_path.clone(),
                format!("docker.io/library/{long_path}:latest"),
                format!("{long_path}:latest"),
            ),
        ]
    }

    /// (input, words the error message must contain)
    fn bad_cases() -> Vec<(String, &'static str)> {
        let d = format!("sha256:{H64}");
        let s = |a: &str, b: &'static str| (a.to_owned(), b);
        vec![
            s("", "empty"),
            s(H64, "cannot specify 64-byte hexadecimal strings"),
            s("Busybox", "repository name (Busybox) must be lowercase"),
            s("user/App", "repository name (user/App) must be lowercase"),
            s("docker.io/Library/busybox", "must be lowercase"),
            s("Foo/Bar", "repository name (Bar) must be lowercase"),
            s(
                "localhost:5000/Foo:tag",
                "repository name (Foo) must be lowercase",
            ),
            s(":tag", "has no repository name"),
            (format!("@{d}"), "has no repository name"),
            s("busybox:", "tag \"\""),
            s("busybox:.x", "tag \".x\""),
            s("busybox:-x", "tag \"-x\""),
            s("busybox:a b", "tag \"a b\""),
            s("busybox:a/b", "registry \"busybox:a\""),
            (
                format!("busybox:{}", "t".repeat(129)),
                "1 to 128 characters",
            ),
            s("busybox@sha256:abc", "bad digest"),
            s("busybox@md5:d41d8cd98f00b204e9800998ecf8427e", "bad digest"),
            s("busybox@", "bad digest"),
            (format!("busybox@{d}@x"), "bad digest"),
            (format!("busybox@{}", d.to_uppercase()), "bad digest"),
            s("a//b", "path component \"\""),
            s("a/", "path component \"\""),
            s("/a", "path component \"\""),
            s("-a", "path component \"-a\""),
            s("a-", "path component \"a-\""),
            s("a..b", "path component \"a..b\""),
            s("a___b", "path component \"a___b\""),
            s("a b", "path component \"a b\""),
            s("bücher", "path component \"bücher\""),
            s("busybox:latest:x", "path component \"busybox:latest\""),
            s("example.com:/foo", "registry \"example.com:\""),
            s("example.com:port/foo", "registry \"example.com:port\""),
            s("-example.com/foo", "registry \"-example.com\""),
            s("example-.com/foo", "registry \"example-.com\""),
            s("ex_ample.com/foo", "registry \"ex_ample.com\""),
            s("example..com/foo", "registry \"example..com\""),
            s("[::1/foo", "registry \"[::1\""),
            s("[]:5000/foo", "registry \"[]:5000\""),
            s("[zz::1]/foo", "registry \"[zz::1]\""),
            s("[::1]x/foo", "registry \"[::1]x\""),
            s("[::1]:/foo", "registry \"[::1]:\""),
            (
                "a".repeat(NAME_TOTAL_LENGTH_MAX - "docker.io/library/".len() + 1),
                "must not be more than 255 characters",
            ),
            (format!("example.com/{}", "b".repeat(244)), "has 256"),
        ]
    }

    #[test]
    fn good_references_normalise_as_docker_does() {
        for (input, full, familiar) in good_cases() {
            let r = Reference::parse(&input)
                .unwrap_or_else(|e| panic!("{input:?} should parse, got: {e}"));
            assert_eq!(r.to_string(), full, "full form of {input:?}");
            assert_eq!(r.familiar(), familiar, "familiar form of {input:?}");
            assert_eq!(input.parse::<Reference>().unwrap(), r);
        }
    }

    #[test]
    fn good_references_round_trip() {
        for (input, _, _) in good_cases() {
            let r = Reference::parse(&input).unwrap();
            assert_eq!(
                Reference::parse(&r.to_string()).unwrap(),
                r,
                "{input:?} via Display"
            );
            assert_eq!(
                Reference::parse(&r.familiar()).unwrap(),
                r,
                "{input:?} via familiar"
            );
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{r}\""));
            assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
        }
    }

    #[test]
    fn bad_references_get_clear_errors() {
        for (input, words) in bad_cases() {
            let err = match Reference::parse(&input) {
                Ok(r) => panic!("{input:?} should be refused, parsed as {r}"),
                Err(e) => e,
            };
            let msg = err.to_string();
            assert!(msg.contains(words), "{input:?}: {msg:?} lacks {words:?}");
            if !input.is_empty() {
                assert!(
                    msg.contains(&input),
                    "{msg:?} does not name the input {input:?}"
                );
            }
        }
    }

    #[test]
    fn digest_errors_carry_the_reason_as_source() {
        let err = Reference::parse("busybox@sha256:abc").unwrap_err();
        let source = err.source().expect("digest error has a source").to_string();
        assert!(
            source.contains("64 hex characters, this one has 3"),
            "{source}"
        );
        let err = Reference::parse("busybox@md5:abc").unwrap_err();
        let source = err.source().unwrap().to_string();
        assert!(
            source.contains("unsupported digest algorithm \"md5\""),
            "{source}"
        );
        assert!(matches!(
            Reference::parse("busybox@"),
            Err(Error::InvalidDigest {
                source: DigestError::MissingSeparator { .. },
                ..
            })
        ));
    }

    #[test]
    fn serde_refuses_invalid_strings() {
        let err = serde_json::from_str::<Reference>("\"Busybox\"").unwrap_err();
        assert!(err.to_string().contains("must be lowercase"), "{err}");
        assert!(serde_json::from_str::<Reference>("42").is_err());
    }

    #[test]
    fn accessors() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.scope("pull"), "repository:library/busybox:pull");
        assert_eq!(r.scope("pull,push"), "repository:library/busybox:pull,push");

        let r = Reference::parse(&format!("127.0.0.1:5000/a/b:tag@sha256:{H64}")).unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "a/b");
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.digest().unwrap().hex(), H64);
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        assert_eq!(r.scope("push"), "repository:a/b:push");

        let r = Reference::parse(&format!("busybox@sha256:{H64}")).unwrap();
        assert_eq!(r.tag(), None, "a digest reference gets no default tag");
        assert_eq!(r.digest().unwrap().to_string(), format!("sha256:{H64}"));
    }

    #[test]
    fn with_tag_and_digest() {
        let r = Reference::parse("user/app:1").unwrap();
        let r2 = r.with_tag("2.0").unwrap();
        assert_eq!(r2.to_string(), "docker.io/user/app:2.0");
        let err = r.with_tag("-bad").unwrap_err().to_string();
        assert!(err.contains("tag \"-bad\""), "{err}");
        assert!(r.with_tag("").is_err());
        assert!(r.with_tag(&"x".repeat(129)).is_err());

        let d = crate::Digest::parse(&format!("sha256:{H64}")).unwrap();
        let pinned = r.with_digest(d.clone());
        assert_eq!(
            pinned.to_string(),
            format!("docker.io/user/app:1@sha256:{H64}")
        );
        let retagged = pinned.with_tag("3").unwrap();
        assert_eq!(retagged.digest(), Some(&d), "with_tag keeps the digest");
        assert_eq!(retagged.tag(), Some("3"));
    }

    #[test]
    fn insecure_default_registries() {
        let cases = [
            ("localhost/a", true),
            ("localhost:5000/a", true),
            ("LOCALHOST:5000/a", true),
            ("127.0.0.1/a", true),
            ("127.0.0.1:5000/a", true),
            ("127.255.3.4:80/a", true),
            ("[::1]/a", true),
            ("[::1]:5000/a", true),
            ("[::ffff:7f00:1]:5000/a", true),
            ("busybox", false),
            ("docker.io/a/b", false),
            ("128.0.0.1:5000/a", false),
            ("10.0.0.1:5000/a", false),
            ("[::2]:5000/a", false),
            ("localhost.example.com/a", false),
            ("127.0.0.1.nip.io/a", false),
        ];
        for (input, insecure) in cases {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.is_insecure_default(), insecure, "{input}");
        }
    }

    #[test]
    fn grammar_helpers() {
        for ok in [
            "a",
            "a0",
            "a.b",
            "a_b",
            "a__b",
            "a-b",
            "a---b",
            "0.1_2__3-4",
        ] {
            assert!(is_path_component(ok), "{ok}");
        }
        for bad in [
            "", "_a", "a_", "a.", ".a", "a._b", "a___b", "a-_b", "A", "a/b",
        ] {
            assert!(!is_path_component(bad), "{bad}");
        }
        for ok in [
            "a",
            "a.b",
            "a-b.c",
            "A.B",
            "localhost:1",
            "[::1]",
            "[fe80::1]:443",
            "1.2.3.4:5",
        ] {
            assert!(is_domain_and_port(ok), "{ok}");
        }
        for bad in [
            "", "a.", ".a", "a:", ":1", "a:1:2", "[]", "[::1", "[g::1]", "a_b", "a-",
        ] {
            assert!(!is_domain_and_port(bad), "{bad}");
        }
        assert_eq!(registry_host("[::1]:5000"), "::1");
        assert_eq!(registry_host("a.b:5000"), "a.b");
        assert_eq!(registry_host("a.b"), "a.b");
    }

    /// A small deterministic generator (no `rand` dependency).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::from(u16::try_from(self.0 >> 48).unwrap_or(0))
        }
    }

    fn check_no_panic(input: &str) {
        match Reference::parse(input) {
            Ok(r) => {
                let full = r.to_string();
                assert_eq!(
                    Reference::parse(&full).as_ref(),
                    Ok(&r),
                    "{input:?} -> {full:?}"
                );
                // Like Docker's, the familiar form of a docker.io repository whose first
                // component looks like a host (`docker.io/a.b/c` -> `a.b/c`) is ambiguous.
                let familiar = r.familiar();
                if r.registry() != DEFAULT_REGISTRY
                    || split_docker_domain(&familiar).0 == DEFAULT_REGISTRY
                {
                    assert_eq!(Reference::parse(&familiar).as_ref(), Ok(&r), "{input:?}");
                }
                assert!(r.name().len() <= NAME_TOTAL_LENGTH_MAX);
                assert!(r.tag().is_some() || r.digest().is_some());
                let _ = (r.is_insecure_default(), r.api_host(), r.scope("pull"));
            }
            Err(e) => {
                let _ = e.to_string();
                let _ = e.source().map(ToString::to_string);
            }
        }
        let _ = Digest::parse(input).map_err(|e| e.to_string());
    }

    #[test]
    fn generated_strings_never_panic_and_round_trip() {
        const PIECES: &[&str] = &[
            "a",
            "b",
            "z",
            "0",
            "9",
            "A",
            "Z",
            ".",
            "_",
            "__",
            "-",
            ":",
            "/",
            "@",
            "[",
            "]",
            "::1",
            "localhost",
            "docker.io",
            "index.docker.io",
            "library",
            "sha256:",
            "sha512:",
            H64,
            "127.0.0.1",
            ":5000",
            "ü",
            " ",
            "\u{0}",
            "latest",
            "é",
        ];
        let mut rng = Lcg(0x5eed);
        let mut ok = 0;
        for _ in 0..20_000 {
            let n = rng.next() % 8;
            let s: String = (0..n).map(|_| PIECES[rng.next() % PIECES.len()]).collect();
            if Reference::parse(&s).is_ok() {
                ok += 1;
            }
            check_no_panic(&s);
        }
        assert!(
            ok > 100,
            "generator should produce some valid references, got {ok}"
        );
    }

    #[test]
    fn mutated_good_references_never_panic() {
        let mut rng = Lcg(42);
        let chars = [
            'a', 'A', '.', '_', '-', ':', '/', '@', '[', ']', '0', 'ß', '\u{301}',
        ];
        for (input, _, _) in good_cases() {
            for _ in 0..200 {
                let mut v: Vec<char> = input.chars().collect();
                for _ in 0..1 + rng.next() % 3 {
                    let i = rng.next() % (v.len() + 1);
                    match rng.next() % 3 {
                        0 => v.insert(i, chars[rng.next() % chars.len()]),
                        1 if i < v.len() => {
                            v.remove(i);
                        }
                        _ if i < v.len() => v[i] = chars[rng.next() % chars.len()],
                        _ => {}
                    }
                }
                check_no_panic(&v.into_iter().collect::<String>());
            }
            // Every prefix and suffix, cut at char boundaries.
            for (i, _) in input.char_indices() {
                check_no_panic(&input[..i]);
                check_no_panic(&input[i..]);
            }
        }
    }
}
