//! Content digests (`algorithm:hex`), as used in `name@sha256:...` references.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A digest algorithm Skiff can verify (the set registered by go-digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, 64 hex characters.
    Sha256,
    /// SHA-384, 96 hex characters.
    Sha384,
    /// SHA-512, 128 hex characters.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as written in a digest (`sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Number of hex characters in an encoded digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha384 => 96,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha384" => Some(Algorithm::Sha384),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a valid digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// No `:` between algorithm and hex.
    #[error("invalid digest {input:?}: must have the form algorithm:hex (e.g. sha256:<64 hex>)")]
    MissingSeparator {
        /// The offending digest string.
        input: String,
    },
    /// The algorithm is not sha256, sha384 or sha512.
    #[error(
        "invalid digest {input:?}: unsupported digest algorithm {algorithm:?} \
         (supported: sha256, sha384, sha512)"
    )]
    UnsupportedAlgorithm {
        /// The offending digest string.
        input: String,
        /// The algorithm as written.
        algorithm: String,
    },
    /// The hex part has the wrong length for the algorithm.
    #[error(
        "invalid digest {input:?}: a {algorithm} digest must have {expected} hex characters, \
         this one has {actual}"
    )]
    WrongLength {
        /// The offending digest string.
        input: String,
        /// The digest's algorithm.
        algorithm: Algorithm,
        /// Required number of hex characters.
        expected: usize,
        /// Number of characters found.
        actual: usize,
    },
    /// The hex part contains something other than `[0-9a-f]`.
    #[error("invalid digest {input:?}: must be lowercase hexadecimal, found {found:?}")]
    NotHex {
        /// The offending digest string.
        input: String,
        /// The first character that is not lowercase hex.
        found: char,
    },
}

/// A validated content digest such as `sha256:e3b0c442...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex` (sha256/sha384/sha512, lowercase hex of
    /// the algorithm's exact length).
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(DigestError::MissingSeparator {
                input: s.to_owned(),
            });
        };
        let Some(algorithm) = Algorithm::from_name(alg) else {
            return Err(DigestError::UnsupportedAlgorithm {
                input: s.to_owned(),
                algorithm: alg.to_owned(),
            });
        };
        if let Some(found) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(DigestError::NotHex {
                input: s.to_owned(),
                found,
            });
        }
        if hex.len() != algorithm.hex_len() {
            return Err(DigestError::WrongLength {
                input: s.to_owned(),
                algorithm,
                expected: algorithm.hex_len(),
                actual: hex.len(),
            });
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// Builds a digest from an algorithm and its hex encoding, validating the hex.
    pub fn new(algorithm: Algorithm, hex: &str) -> Result<Self, DigestError> {
        Self::parse(&format!("{algorithm}:{hex}"))
    }

    /// The digest's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex encoding (without the `algorithm:` prefix).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H64: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_valid_digests() {
        let d = Digest::parse(&format!("sha256:{H64}")).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex(), H64);
        assert_eq!(d.to_string(), format!("sha256:{H64}"));

        let h128 = "ab".repeat(64);
        let d = Digest::parse(&format!("sha512:{h128}")).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        assert_eq!(d.to_string(), format!("sha512:{h128}"));

        let h96 = "0f".repeat(48);
        let d: Digest = format!("sha384:{h96}").parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha384);

        assert_eq!(Digest::new(Algorithm::Sha256, H64).unwrap().hex(), H64);
    }

    #[test]
    fn rejects_invalid_digests_with_reasons() {
        let cases: &[(&str, &str)] = &[
            ("", "algorithm:hex"),
            ("sha256", "algorithm:hex"),
            (H64, "algorithm:hex"),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                "unsupported digest algorithm \"md5\"",
            ),
            ("SHA256:abc", "unsupported digest algorithm"),
            (":abc", "unsupported digest algorithm"),
            ("sha256:", "64 hex characters, this one has 0"),
            ("sha256:abc", "64 hex characters, this one has 3"),
            ("sha512:abc", "128 hex characters"),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "lowercase hexadecimal, found 'E'",
            ),
            (
                "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "found 'g'",
            ),
            ("sha256:sha256:abc", "found 's'"),
        ];
        for (input, words) in cases {
            let err = Digest::parse(input).unwrap_err().to_string();
            assert!(err.contains(words), "{input:?}: {err:?} lacks {words:?}");
            assert!(
                err.contains(&format!("{input:?}")),
                "{err:?} does not name the input"
            );
        }
        let long = format!("sha256:{H64}0");
        assert!(matches!(
            Digest::parse(&long),
            Err(DigestError::WrongLength { actual: 65, .. })
        ));
    }

    #[test]
    fn serde_uses_string_form() {
        let d = Digest::parse(&format!("sha256:{H64}")).unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"sha256:{H64}\""));
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        let err = serde_json::from_str::<Digest>("\"sha256:zz\"").unwrap_err();
        assert!(err.to_string().contains("lowercase hexadecimal"), "{err}");
    }
}
