//! Platforms (`linux/arm64/v8`) and choosing a manifest from an index, as containerd does.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Descriptor;

use crate::error::Error;

/// The annotation BuildKit puts on attestation manifests in an index.
pub const REFERENCE_TYPE_ANNOTATION: &str = "vnd.docker.reference.type";
/// Its value for an attestation manifest.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// An image platform: OS, architecture and optional CPU variant.
///
/// Values are normalised as containerd's `platforms.Normalize` does (`x86_64` → `amd64`,
/// `aarch64` → `arm64`), except that arm64 keeps its default variant `v8` explicit and
/// 32-bit arm defaults to `v7`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`, `windows`, ...
    pub os: String,
    /// `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`, ...
    pub architecture: String,
    /// `v8`, `v7`, `v6`, ...; `None` when the architecture has none.
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from its parts, normalised.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = match os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_owned(),
            o => o.to_owned(),
        };
        let (architecture, variant) = normalize_arch(
            &architecture.to_ascii_lowercase(),
            &variant.unwrap_or("").to_ascii_lowercase(),
        );
        Platform {
            os,
            architecture,
            variant: (!variant.is_empty()).then_some(variant),
        }
    }

    /// The platform this program runs on (`linux/amd64` on x86-64 Linux).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, None)
    }

    /// The platforms this one can run, best first (containerd's `platforms.Only`):
    /// `arm64/v8` also runs `arm/v8` .. `arm/v5`, `arm/v7` runs `arm/v7` .. `arm/v5`,
    /// `amd64/v3` runs `amd64/v3` .. `amd64` (v1).
    fn compatible(&self) -> Vec<Platform> {
        let with = |arch: &str, variant: Option<String>| Platform {
            os: self.os.clone(),
            architecture: arch.to_owned(),
            variant,
        };
        let level = |v: &Option<String>| -> Option<u32> {
            v.as_deref()
                .and_then(|v| v.strip_prefix('v'))
                .and_then(|n| n.parse().ok())
        };
        match self.architecture.as_str() {
            "arm64" => {
                let mut out = vec![self.clone()];
                if self.variant.as_deref() == Some("v8") {
                    for n in (5..=8).rev() {
                        out.push(with("arm", Some(format!("v{n}"))));
                    }
                }
                out
            }
            "arm" => match level(&self.variant) {
                Some(top @ 5..=8) => (5..=top)
                    .rev()
                    .map(|n| with("arm", Some(format!("v{n}"))))
                    .collect(),
                _ => vec![self.clone()],
            },
            "amd64" => match level(&self.variant) {
                Some(top @ 2..=4) => (2..=top)
                    .rev()
                    .map(|n| with("amd64", Some(format!("v{n}"))))
                    .chain([with("amd64", None)])
                    .collect(),
                _ => vec![self.clone()],
            },
            _ => vec![self.clone()],
        }
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (a, v) = match (arch, variant) {
        ("i386" | "386" | "i686", _) => ("386", ""),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", "" | "8" | "v8" | "v8.0") => ("arm64", "v8"),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "") => ("arm", "v7"),
        ("arm", "5" | "6" | "7" | "8") => return ("arm".to_owned(), format!("v{variant}")),
        (a, v) => (a, v),
    };
    (a.to_owned(), v.to_owned())
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;

    /// Parses `os/arch[/variant]`, or `os` alone (the host's architecture).
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidPlatform {
            input: s.to_owned(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
        {
            return Err(invalid());
        }
        match parts.as_slice() {
            [os] => {
                let host = Platform::host();
                Ok(Platform::new(
                    os,
                    &host.architecture,
                    host.variant.as_deref(),
                ))
            }
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(invalid()),
        }
    }
}

impl From<&oci_spec::image::Platform> for Platform {
    fn from(p: &oci_spec::image::Platform) -> Self {
        Platform::new(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        )
    }
}

/// Whether an index entry is an attestation (BuildKit provenance/SBOM), not an image.
pub fn is_attestation(d: &Descriptor) -> bool {
    let annotated = d
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REFERENCE_TYPE_ANNOTATION))
        .is_some_and(|v| v == ATTESTATION_MANIFEST);
    let unknown = d.platform().as_ref().is_some_and(|p| {
        p.os().to_string() == "unknown" && p.architecture().to_string() == "unknown"
    });
    annotated || unknown
}

/// Chooses the entry of an index's `manifests` for `wanted`: the best compatible platform,
/// first in index order among equals; attestation entries and entries without a platform
/// are skipped. On no match, the error lists what the index offers.
pub(crate) fn select<'a>(
    manifests: &'a [Descriptor],
    wanted: &Platform,
    reference: &str,
) -> Result<&'a Descriptor, Error> {
    let candidates: Vec<(&Descriptor, Platform)> = manifests
        .iter()
        .filter(|d| !is_attestation(d))
        .filter_map(|d| d.platform().as_ref().map(|p| (d, Platform::from(p))))
        .collect();
    let wanted = Platform::new(&wanted.os, &wanted.architecture, wanted.variant.as_deref());
    for target in wanted.compatible() {
        if let Some((d, _)) = candidates.iter().find(|(_, p)| *p == target) {
            return Ok(d);
        }
    }
    let available: Vec<String> = candidates.iter().map(|(_, p)| p.to_string()).collect();
    Err(Error::NoMatchingPlatform {
        reference: reference.to_owned(),
        wanted: wanted.to_string(),
        available: if available.is_empty() {
            "no platforms".to_owned()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    fn index(entries: &[(&str, Option<&str>)]) -> Vec<Descriptor> {
        entries
            .iter()
            .enumerate()
            .map(|(i, (plat, annotation))| {
                let parts: Vec<&str> = plat.split('/').collect();
                let mut v = serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{:064x}", i),
                    "size": 100,
                    "platform": {"os": parts[0], "architecture": parts[1]}
                });
                if let Some(variant) = parts.get(2) {
                    v["platform"]["variant"] = (*variant).into();
                }
                if let Some(a) = annotation {
                    v["annotations"] = serde_json::json!({ REFERENCE_TYPE_ANNOTATION: a });
                }
                serde_json::from_value(v).unwrap()
            })
            .collect()
    }

    fn chosen(manifests: &[Descriptor], wanted: &str) -> Result<usize, Error> {
        let d = select(manifests, &p(wanted), "ref")?;
        Ok(manifests.iter().position(|m| std::ptr::eq(m, d)).unwrap())
    }

    #[test]
    fn normalisation() {
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/arm64/8").to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/arm/6").to_string(), "linux/arm/v6");
        assert_eq!(p("Linux/AMD64/v1").to_string(), "linux/amd64");
        assert_eq!(p("linux/i386").to_string(), "linux/386");
        assert_eq!(p("linux/s390x").to_string(), "linux/s390x");
        assert!("".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
        assert_eq!(p("linux"), Platform::host());
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(Platform::host().to_string(), "linux/amd64");
        }
    }

    #[test]
    fn selection() {
        let idx = index(&[
            ("linux/amd64", None),
            ("linux/arm64", None), // no variant: means v8
            ("linux/arm/v7", None),
            ("linux/arm/v6", None),
            ("unknown/unknown", Some(ATTESTATION_MANIFEST)),
            ("linux/s390x", Some(ATTESTATION_MANIFEST)),
        ]);
        assert_eq!(chosen(&idx, "linux/amd64").unwrap(), 0);
        assert_eq!(chosen(&idx, "linux/arm64").unwrap(), 1);
        assert_eq!(chosen(&idx, "linux/arm64/v8").unwrap(), 1);
        assert_eq!(chosen(&idx, "linux/arm").unwrap(), 2);
        assert_eq!(chosen(&idx, "linux/arm/v6").unwrap(), 3);
        assert_eq!(chosen(&idx, "linux/arm/v8").unwrap(), 2);
        // attestation entries never match, even with a real-looking platform
        let err = chosen(&idx, "linux/s390x").unwrap_err().to_string();
        assert_eq!(
            err,
            "no matching manifest for linux/s390x in the manifest list ref; it has: \
             linux/amd64, linux/arm64/v8, linux/arm/v7, linux/arm/v6"
        );
        assert!(chosen(&idx, "windows/amd64").is_err());
    }

    #[test]
    fn fallbacks_in_preference_order() {
        // arm64 falls back to 32-bit arm, best variant first
        let idx = index(&[("linux/arm/v6", None), ("linux/arm/v7", None)]);
        assert_eq!(chosen(&idx, "linux/arm64").unwrap(), 1);
        assert_eq!(chosen(&idx, "linux/arm/v6").unwrap(), 0);
        assert!(chosen(&idx, "linux/arm/v5").is_err());
        // amd64 v3 runs v2 and v1 images, preferring v2
        let idx = index(&[("linux/amd64", None), ("linux/amd64/v2", None)]);
        assert_eq!(chosen(&idx, "linux/amd64/v3").unwrap(), 1);
        assert_eq!(chosen(&idx, "linux/amd64").unwrap(), 0);
        // first of equals wins
        let idx = index(&[("linux/amd64", None), ("linux/amd64/v1", None)]);
        assert_eq!(chosen(&idx, "linux/amd64").unwrap(), 0);
        let err = chosen(&[], "linux/amd64").unwrap_err().to_string();
        assert!(err.ends_with("it has: no platforms"), "{err}");
    }
}
