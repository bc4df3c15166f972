//! Skiff's OCI distribution (registry API v2) client: what `docker pull` and `docker push`
//! do on the wire.
//!
//! - **Endpoints**: HTTPS with the system CA roots (plus `<certs_dir>/<host>/*.crt`); plain
//!   HTTP as a fallback only for insecure registries (`localhost`, 127.0.0.0/8, `::1`, and
//!   [`Config::insecure_registries`]). Pulls from `docker.io` try [`Config::mirrors`] in
//!   order, then Docker Hub.
//! - **Authentication**: anonymous, HTTP basic, or bearer tokens as the registry's
//!   `WWW-Authenticate` challenge asks (token `GET` with basic credentials, the OAuth2
//!   `POST` form as fallback and for identity tokens). Tokens are cached per scope and
//!   fetched again when they expire or a request gets a 401. Credentials come from the
//!   `auths` of `config.json` in `$DOCKER_CONFIG` or `~/.docker` (credential helpers are not
//!   supported); [`Client::login`] checks and stores them.
//! - **Manifests**: Docker schema 2, Docker manifest lists, OCI manifests and OCI indexes
//!   (schema 1 is refused), verified against the digest they were fetched by or announced
//!   with; [`Client::resolve`] picks the platform from an index as containerd does, skipping
//!   attestation manifests.
//! - **Blobs**: [`BlobReader`] streams and verifies size and digest, resuming broken
//!   transfers with `Range` requests; non-distributable layers come from their `urls`.
//! - **Push**: [`Client::blob_exists`], [`Client::push_blob`] (monolithic or chunked),
//!   [`Client::mount_blob`], [`Client::put_manifest`]; also [`Client::list_tags`] and
//!   [`Client::delete_manifest`].
//!
//! The client is blocking (layers go straight into a synchronous unpacker on worker
//! threads; async callers use `spawn_blocking`), and [`Client`] is `Clone + Send + Sync`.
//!
//! ```no_run
//! use std::io::Read;
//! use skiff_reference::Reference;
//! use skiff_registry::{Client, Config, Platform};
//!
//! let client = Client::new(Config::default())?;
//! let reference = Reference::parse("busybox").unwrap();
//! let image = client.resolve(&reference, &Platform::host())?;
//! println!("{reference} is {}", image.digest);
//! let config = client.fetch_blob_bytes(&reference, &image.config, 1 << 20)?;
//! for layer in &image.layers {
//!     let mut blob = client.fetch_blob(&reference, layer)?;
//!     // Feed `blob` to the unpacker; if any read fails, throw away what it wrote.
//!     std::io::copy(&mut blob, &mut std::io::sink()).unwrap();
//! }
//! # Ok::<(), skiff_registry::Error>(())
//! ```

#![forbid(unsafe_code)]

mod auth;
mod blob;
mod client;
mod credentials;
mod error;
mod hash;
mod manifest;
mod platform;
mod push;

pub use blob::BlobReader;
pub use client::{Client, Config, UploadMode};
pub use credentials::{docker_config_dir, Credential, DOCKER_HUB_AUTH_KEY};
pub use error::{Error, Result};
pub use hash::sha256_digest;
pub use manifest::{
    is_index, is_non_distributable, Manifest, ManifestKind, Resolved, DOCKER_CONFIG,
    DOCKER_FOREIGN_LAYER, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MANIFEST_SIZE_LIMIT, OCI_CONFIG,
    OCI_INDEX, OCI_MANIFEST,
};
pub use oci_spec::image::Descriptor;
pub use platform::{is_attestation, Platform};
