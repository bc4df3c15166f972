//! Manifest media types and parsing (Docker schema 2 and OCI, images and indexes).

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::de::IgnoredAny;
use serde::Deserialize;
use skiff_reference::Digest;

use crate::error::{Error, Result};
use crate::platform::Platform;

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 1 (refused).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Signed Docker schema 1 (refused).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker foreign layer (Windows base layers), served from the descriptor's `urls`.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// The `Accept` header for manifests: the four formats this client understands.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest accepted (containerd's limit).
pub const MANIFEST_SIZE_LIMIT: u64 = 4 << 20;

/// Whether layers of this media type are non-distributable ("foreign"): fetched from the
/// descriptor's `urls` when the registry lacks them, and never pushed.
pub fn is_non_distributable(media_type: &str) -> bool {
    media_type == DOCKER_FOREIGN_LAYER
        || media_type.starts_with("application/vnd.oci.image.layer.nondistributable.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.foreign.")
}

/// Whether a media type is an index or manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// The parsed body of a manifest.
#[derive(Debug, Clone)]
pub enum ManifestKind {
    /// An image manifest (OCI or Docker schema 2): config and layers.
    Image(Box<ImageManifest>),
    /// An index or manifest list: one manifest per platform.
    Index(Box<ImageIndex>),
}

/// A manifest as fetched: verified digest, media type, the exact bytes, and their parse.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The digest of `bytes` (sha256 unless the reference named another algorithm).
    pub digest: Digest,
    /// The media type (from `Content-Type`, else the body's `mediaType`).
    pub media_type: String,
    /// The bytes as served; they hash to `digest`.
    pub bytes: Vec<u8>,
    /// The parsed manifest.
    pub kind: ManifestKind,
}

impl Manifest {
    /// The image manifest, if this is one.
    pub fn image(&self) -> Option<&ImageManifest> {
        match &self.kind {
            ManifestKind::Image(m) => Some(m),
            ManifestKind::Index(_) => None,
        }
    }

    /// The index, if this is one.
    pub fn index(&self) -> Option<&ImageIndex> {
        match &self.kind {
            ManifestKind::Index(i) => Some(i),
            ManifestKind::Image(_) => None,
        }
    }
}

/// What [`crate::Client::resolve`] found for a reference and a platform.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The digest of the top-level manifest or index: what `docker images --digests` and
    /// `RepoDigests` show.
    pub digest: Digest,
    /// The index or manifest list the reference pointed to, if it was one.
    pub index: Option<Manifest>,
    /// The platform entry chosen from the index (`None` for a single-platform image, whose
    /// platform is only known from its config).
    pub platform: Option<Platform>,
    /// The image manifest chosen (the top-level one for a single-platform image).
    pub manifest: Manifest,
    /// The config blob's descriptor.
    pub config: Descriptor,
    /// The layer descriptors, base layer first.
    pub layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default, rename = "schemaVersion")]
    schema_version: Option<u64>,
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<IgnoredAny>,
    #[serde(default)]
    config: Option<IgnoredAny>,
}

const KNOWN: [&str; 4] = [
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    OCI_INDEX,
];

/// Parses manifest bytes; `content_type` is the response's header, if any.
pub(crate) fn parse(
    bytes: &[u8],
    content_type: Option<&str>,
    reference: &str,
) -> Result<(String, ManifestKind)> {
    let content_type = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|c| !c.is_empty());
    let invalid = |media_type: &str, reason: String| Error::InvalidManifest {
        reference: reference.to_owned(),
        media_type: media_type.to_owned(),
        reason,
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| {
        invalid(
            content_type.as_deref().unwrap_or("unknown media type"),
            format!("not JSON: {e}"),
        )
    })?;
    let media_type = match (&content_type, &probe.media_type) {
        (Some(ct), _) if KNOWN.contains(&ct.as_str()) => ct.clone(),
        (Some(ct), _) if ct == DOCKER_SCHEMA1 || ct == DOCKER_SCHEMA1_SIGNED => ct.clone(),
        (_, Some(mt)) if !mt.is_empty() => mt.clone(),
        _ if probe.schema_version == Some(1) => DOCKER_SCHEMA1.to_owned(),
        _ if probe.manifests.is_some() => OCI_INDEX.to_owned(),
        _ if probe.config.is_some() => OCI_MANIFEST.to_owned(),
        (ct, _) => {
            return Err(Error::UnsupportedMediaType {
                reference: reference.to_owned(),
                media_type: ct.clone().unwrap_or_else(|| "none".to_owned()),
            })
        }
    };
    if media_type == DOCKER_SCHEMA1
        || media_type == DOCKER_SCHEMA1_SIGNED
        || probe.schema_version == Some(1)
    {
        return Err(Error::Schema1 {
            reference: reference.to_owned(),
            media_type,
        });
    }
    let kind = match media_type.as_str() {
        DOCKER_MANIFEST | OCI_MANIFEST => ManifestKind::Image(Box::new(
            serde_json::from_slice(bytes).map_err(|e| invalid(&media_type, e.to_string()))?,
        )),
        DOCKER_MANIFEST_LIST | OCI_INDEX => ManifestKind::Index(Box::new(
            serde_json::from_slice(bytes).map_err(|e| invalid(&media_type, e.to_string()))?,
        )),
        _ => {
            return Err(Error::UnsupportedMediaType {
                reference: reference.to_owned(),
                media_type,
            })
        }
    };
    Ok((media_type, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn docker_manifest() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"{DOCKER_CONFIG}","size":2,"digest":"{D}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":3,"digest":"{D}"}},
                      {{"mediaType":"{DOCKER_FOREIGN_LAYER}","size":4,"digest":"{D}","urls":["https://x/y"]}}]}}"#
        )
    }

    #[test]
    fn docker_schema2_by_header_or_body() {
        let m = docker_manifest();
        for ct in [
            Some(DOCKER_MANIFEST),
            None,
            Some("application/json; charset=utf-8"),
        ] {
            let (mt, kind) = parse(m.as_bytes(), ct, "r").unwrap();
            assert_eq!(mt, DOCKER_MANIFEST);
            let ManifestKind::Image(img) = kind else {
                panic!("not an image")
            };
            assert_eq!(img.layers().len(), 2);
            assert_eq!(img.layers()[1].urls().as_ref().unwrap()[0], "https://x/y");
            assert!(is_non_distributable(img.layers()[1].media_type().as_ref()));
            assert!(!is_non_distributable(img.layers()[0].media_type().as_ref()));
        }
    }

    #[test]
    fn oci_without_media_type_field() {
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","size":1,"digest":"{D}","platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let (mt, kind) = parse(idx.as_bytes(), None, "r").unwrap();
        assert_eq!(mt, OCI_INDEX);
        assert!(matches!(kind, ManifestKind::Index(i) if i.manifests().len() == 1));
        let (mt, _) = parse(idx.as_bytes(), Some(DOCKER_MANIFEST_LIST), "r").unwrap();
        assert_eq!(mt, DOCKER_MANIFEST_LIST);
        let img = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","size":2,"digest":"{D}"}},"layers":[]}}"#
        );
        assert_eq!(parse(img.as_bytes(), None, "r").unwrap().0, OCI_MANIFEST);
    }

    #[test]
    fn refusals() {
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        let err = parse(s1.as_bytes(), Some(DOCKER_SCHEMA1_SIGNED), "host/x:y").unwrap_err();
        assert!(matches!(err, Error::Schema1 { .. }));
        assert!(err.to_string().contains("schema 1"), "{err}");
        assert!(matches!(
            parse(s1.as_bytes(), None, "r").unwrap_err(),
            Error::Schema1 { .. }
        ));
        let err = parse(b"{}", Some("text/html"), "r").unwrap_err();
        assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");
        let err = parse(
            br#"{"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}"#,
            None,
            "r",
        )
        .unwrap_err();
        assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");
        let err = parse(b"not json", None, "r").unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
        let err = parse(
            br#"{"schemaVersion":2,"config":{}}"#,
            Some(OCI_MANIFEST),
            "r",
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidManifest { .. }), "{err}");
    }
}
