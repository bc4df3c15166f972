//! Docker image references, parsed and normalised exactly as `docker pull` does
//! (github.com/distribution/reference `ParseNormalizedNamed` + `TagNameOnly`).
//!
//! ```
//! use skiff_reference::Reference;
//!
//! let r: Reference = "busybox".parse().unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
//! assert_eq!(r.familiar(), "busybox:latest");
//! assert_eq!(r.api_host(), "registry-1.docker.io");
//! assert_eq!(r.scope("pull"), "repository:library/busybox:pull");
//! ```

#![forbid(unsafe_code)]

mod digest;
mod reference;

pub use digest::{Algorithm, Digest, DigestError};
pub use reference::{
    Error, Reference, DEFAULT_REGISTRY, DEFAULT_TAG, DOCKER_HUB_API_HOST, NAME_TOTAL_LENGTH_MAX,
};
