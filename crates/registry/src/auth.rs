//! `WWW-Authenticate` challenges and bearer tokens (the Docker token authentication spec).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// One challenge of a `WWW-Authenticate` header: a scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// The scheme, lowercased: `bearer`, `basic`.
    pub scheme: String,
    /// The parameters, keys lowercased: `realm`, `service`, `scope`, `error`.
    pub params: HashMap<String, String>,
}

/// How a registry wants requests authenticated, from its answer to `GET /v2/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthScheme {
    /// No authentication (`/v2/` answered 200).
    Anonymous,
    /// HTTP basic authentication on every request.
    Basic,
    /// Bearer tokens from the token server at `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl Challenge {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
}

/// Parses the challenges of one `WWW-Authenticate` header value (RFC 7235):
/// `Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"`,
/// several challenges may follow each other separated by commas.
pub(crate) fn parse_challenges(header: &str) -> Result<Vec<Challenge>, String> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        if rest.is_empty() {
            break;
        }
        // A token: either a new scheme (no '=' follows) or a parameter name.
        let end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..end];
        if token.is_empty() {
            return Err(format!("unexpected character at {rest:?}"));
        }
        let after = rest[end..].trim_start_matches([' ', '\t']);
        if let Some(value_part) = after.strip_prefix('=') {
            // token68 after a scheme ("Basic abc==") is not a parameter; only params matter.
            let challenge = out
                .last_mut()
                .ok_or_else(|| format!("parameter {token:?} before any scheme"))?;
            let value_part = value_part.trim_start_matches([' ', '\t']);
            let (value, remaining) = if let Some(quoted) = value_part.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut close = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            close = Some(i);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                let close =
                    close.ok_or_else(|| format!("unterminated quoted value for {token}"))?;
                (value, &quoted[close + 1..])
            } else {
                let end = value_part.find(',').unwrap_or(value_part.len());
                (value_part[..end].trim().to_owned(), &value_part[end..])
            };
            challenge.params.insert(token.to_ascii_lowercase(), value);
            rest = remaining.trim_start_matches([' ', '\t']);
            if !rest.is_empty() && !rest.starts_with(',') {
                return Err(format!("expected ',' before {rest:?}"));
            }
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: HashMap::new(),
            });
            rest = after;
        }
    }
    if out.is_empty() {
        return Err("no challenge".to_owned());
    }
    Ok(out)
}

/// Picks how to authenticate from a registry's challenges: bearer if offered, else basic.
pub(crate) fn scheme_from_challenges(challenges: &[Challenge]) -> Result<AuthScheme, String> {
    if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
        let realm = bearer
            .param("realm")
            .filter(|r| r.starts_with("http://") || r.starts_with("https://"))
            .ok_or("the Bearer challenge has no http(s) realm")?;
        return Ok(AuthScheme::Bearer {
            realm: realm.to_owned(),
            service: bearer.param("service").map(str::to_owned),
        });
    }
    if challenges.iter().any(|c| c.scheme == "basic") {
        return Ok(AuthScheme::Basic);
    }
    Err(format!(
        "no supported scheme (offered: {})",
        challenges
            .iter()
            .map(|c| c.scheme.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// A token server's answer.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// The spec's default lifetime when the server gives none, and the minimum.
const DEFAULT_TOKEN_LIFETIME: u64 = 60;

/// A bearer token and when to stop using it.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub value: String,
    pub refresh_at: Instant,
}

impl Token {
    /// Builds a token received at `now`. It is refreshed a little before it expires:
    /// a quarter of its lifetime, at most 10 s, early.
    pub fn from_response(resp: TokenResponse, now: Instant) -> Option<Token> {
        let value = resp
            .token
            .filter(|t| !t.is_empty())
            .or(resp.access_token.filter(|t| !t.is_empty()))?;
        let lifetime = resp.expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let margin = (lifetime / 4).min(10);
        Some(Token {
            value,
            refresh_at: now + Duration::from_secs(lifetime.saturating_sub(margin)),
        })
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
        assert_eq!(
            scheme_from_challenges(&c).unwrap(),
            AuthScheme::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            }
        );
    }

    #[test]
    fn several_challenges_and_odd_spacing() {
        let c = parse_challenges(
            r#"Basic realm="x, \"y\"" , BEARER Realm = "http://t/token", error=insufficient_scope"#,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"x, "y""#));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("http://t/token"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
        // bearer wins over basic
        assert!(matches!(
            scheme_from_challenges(&c).unwrap(),
            AuthScheme::Bearer { service: None, .. }
        ));
    }

    #[test]
    fn basic_only_and_errors() {
        let c = parse_challenges(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(scheme_from_challenges(&c).unwrap(), AuthScheme::Basic);
        assert!(parse_challenges("").is_err());
        assert!(parse_challenges(r#"Bearer realm="unterminated"#).is_err());
        assert!(parse_challenges(r#"realm="x""#).is_err());
        let c = parse_challenges(r#"Bearer service="s""#).unwrap();
        assert!(scheme_from_challenges(&c).is_err());
        let c = parse_challenges(r#"Negotiate"#).unwrap();
        assert!(scheme_from_challenges(&c)
            .unwrap_err()
            .contains("negotiate"));
    }

    #[test]
    fn token_lifetime() {
        let now = Instant::now();
        let t = Token::from_response(
            TokenResponse {
                token: None,
                access_token: Some("a".into()),
                expires_in: Some(300),
                refresh_token: None,
            },
            now,
        )
        .unwrap();
        assert_eq!(t.value, "a");
        assert!(t.is_fresh(now + Duration::from_secs(289)));
        assert!(!t.is_fresh(now + Duration::from_secs(290)));
        let t = Token::from_response(
            TokenResponse {
                token: Some("t".into()),
                access_token: Some("a".into()),
                expires_in: None,
                refresh_token: None,
            },
            now,
        )
        .unwrap();
        assert_eq!(t.value, "t");
        assert!(t.is_fresh(now + Duration::from_secs(49)));
        assert!(!t.is_fresh(now + Duration::from_secs(51)));
        let empty = TokenResponse {
            token: Some(String::new()),
            access_token: None,
            expires_in: None,
            refresh_token: None,
        };
        assert!(Token::from_response(empty, now).is_none());
    }
}
