//! Skiff's image orchestration: `docker pull` and `docker push` between a registry
//! ([`skiff_registry::Client`]) and the local store ([`skiff_store::Store`]), reporting
//! progress as Docker's JSON progress messages ([`Progress`]).
//!
//! # Pull
//!
//! [`pull`] resolves the reference (an index is resolved to the requested platform), stores
//! the index (recorded as the image's repo digest, which gc keeps) and image manifest
//! and the verified config in the content store, checks that
//! the config's `rootfs.diff_ids` match the layers, and then downloads the layers on up to
//! [`PullOptions::max_concurrent_downloads`] worker threads (3, like dockerd). Each layer is
//! streamed once: registry [`skiff_registry::BlobReader`] (digest checked at EOF) → tee into
//! the store's [`skiff_store::BlobWriter`] → [`skiff_store::Store::unpack_layer`]
//! (decompress + untar + diffID check while downloading). The store does not need a
//! layer's parent snapshot to unpack it, so layers are unpacked in parallel too; no layer is
//! ever held in memory. Layers whose blob and snapshot exist are skipped (`Already
//! exists`), so a second pull of the same image downloads only the manifest. The pull holds
//! a store lease throughout; the image record is written last, so an error leaves no record,
//! and whatever was stored is unreferenced and removed by [`skiff_store::Store::gc`].
//!
//! Because downloading and extracting happen in one pass, the `Verifying Checksum`,
//! `Download complete` and `Extracting` messages of a layer are sent together after its
//! stream ended, just before `Pull complete`: the Docker CLI renders them as usual.
//!
//! # Push
//!
//! [`push`] sends an image's layers (skipping those the target repository has, mounting
//! those available in another repository of the same registry the image was pulled from
//! or pushed to, uploading the rest monolithically or in chunks), then its config, then its
//! stored manifest byte for byte, so an unchanged image keeps its manifest digest.
//!
//! # Use from a daemon
//!
//! ```no_run
//! use skiff_image::{pull, Progress};
//! use skiff_reference::Reference;
//! use skiff_registry::{Client, Config, Platform};
//! use skiff_store::{Store, StoreOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("/var/lib/skiff", StoreOptions::default())?;
//! let client = Client::new(Config::default())?;
//! let reference = Reference::parse("busybox")?;
//! // Each message is one line of the `POST /images/create` response body.
//! let mut send = |p: Progress| println!("{}", p.to_json());
//! let result = pull(&store, &client, &reference, &Platform::host(), &mut send)?;
//! println!("{} is {}", reference, result.image.id);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod error;
mod pool;
mod progress;
mod pull;
mod push;
pub mod render;

pub use error::{Error, Result};
pub use progress::{human_size, Progress, ProgressDetail};
pub use pull::{pull, pull_with, PullOptions, PullResult};
pub use push::{push, push_with, PushOptions};

/// Short ID of a digest as Docker shows it in progress lines: its first 12 hex digits.
pub fn short_id(d: &skiff_reference::Digest) -> String {
    d.hex().chars().take(12).collect()
}
