//! Pushing: blob existence, uploads (monolithic and chunked), cross-repository mounts,
//! manifests, and the tag list and manifest delete.

use std::io::Read;

use serde::Deserialize;
use skiff_reference::{Digest, Reference};

use crate::client::{
    enc, header, manifest_ref, pull_scope, push_scope, read_body, resolve_location, Client,
    ReqBody, Target, UploadMode,
};
use crate::error::{Error, Result};
use crate::hash::{digest_of, Hasher};

impl Client {
    /// Whether the repository of `repo` has the blob (`HEAD /v2/<name>/blobs/<digest>`).
    pub fn blob_exists(&self, repo: &Reference, digest: &Digest) -> Result<bool> {
        let t = self.push_target(repo)?;
        let url = t.url(&format!("blobs/{digest}"));
        let resp = self.request(&t, &[push_scope(&t)], "HEAD", &url, &[], ReqBody::Empty)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_error(&t, "HEAD", &url, resp, &format!("blob {digest}"))),
        }
    }

    /// Uploads `size` bytes from `reader` as blob `digest` into the repository of `repo`.
    ///
    /// Does not check whether the blob exists first (see [`Client::blob_exists`] and
    /// [`Client::mount_blob`]); skip non-distributable layers
    /// ([`crate::is_non_distributable`]) as Docker does. In chunked mode the digest and size
    /// are checked before the upload is committed; in monolithic mode the registry checks.
    pub fn push_blob(
        &self,
        repo: &Reference,
        digest: &Digest,
        size: u64,
        reader: &mut dyn Read,
        mode: UploadMode,
    ) -> Result<()> {
        let t = self.push_target(repo)?;
        let scopes = [push_scope(&t)];
        let mut location = self.start_upload(&t, &scopes, "")?;
        let what = format!("blob {digest} for {}", repo.name());
        match mode {
            UploadMode::Monolithic => {
                let url = with_query(&location, &format!("digest={}", enc(&digest.to_string())));
                let len = size.to_string();
                let mut limited = reader.take(size);
                let resp = self.request(
                    &t,
                    &scopes,
                    "PUT",
                    &url,
                    &[
                        ("Content-Type", "application/octet-stream"),
                        ("Content-Length", &len),
                    ],
                    ReqBody::Reader(&mut limited),
                )?;
                if resp.status().as_u16() != 201 {
                    return Err(self.status_error(&t, "PUT", &url, resp, &what));
                }
            }
            UploadMode::Chunked(chunk_size) => {
                let chunk_size = chunk_size.max(1);
                let mut buf = vec![0u8; chunk_size];
                let mut hasher = Hasher::new(digest.algorithm());
                let mut offset: u64 = 0;
                loop {
                    let n = read_full(reader, &mut buf).map_err(|source| Error::Read {
                        url: what.clone(),
                        source,
                    })?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    let range = format!("{}-{}", offset, offset + n as u64 - 1);
                    let len = n.to_string();
                    let resp = self.request(
                        &t,
                        &scopes,
                        "PATCH",
                        &location,
                        &[
                            ("Content-Type", "application/octet-stream"),
                            ("Content-Range", &range),
                            ("Content-Length", &len),
                        ],
                        ReqBody::Bytes(&buf[..n]),
                    )?;
                    if resp.status().as_u16() != 202 {
                        return Err(self.status_error(&t, "PATCH", &location, resp, &what));
                    }
                    location = next_location(&t, &location, &header(&resp, "location"))?;
                    offset += n as u64;
                    if offset > size {
                        break;
                    }
                }
                let actual = hasher.finish();
                if offset != size || &actual != digest {
                    self.cancel_upload(&t, &scopes, &location);
                    return Err(if offset != size {
                        Error::SizeMismatch {
                            what,
                            expected: size,
                            actual: offset,
                        }
                    } else {
                        Error::DigestMismatch {
                            what,
                            expected: digest.clone(),
                            actual,
                        }
                    });
                }
                let url = with_query(&location, &format!("digest={}", enc(&digest.to_string())));
                let resp = self.request(
                    &t,
                    &scopes,
                    "PUT",
                    &url,
                    &[("Content-Type", "application/octet-stream")],
                    ReqBody::Bytes(&[]),
                )?;
                if resp.status().as_u16() != 201 {
                    return Err(self.status_error(&t, "PUT", &url, resp, &what));
                }
            }
        }
        tracing::debug!(%digest, repo = %repo.name(), ?mode, "pushed blob");
        Ok(())
    }

    /// Asks the registry to link blob `digest` from repository `from_repository` (same
    /// registry, a path like `library/busybox`) into `repo`'s repository. Returns `false`
    /// when the registry declined (it then started an upload, which is cancelled): upload
    /// the blob instead.
    pub fn mount_blob(
        &self,
        repo: &Reference,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<bool> {
        let t = self.push_target(repo)?;
        let scopes = [push_scope(&t), format!("repository:{from_repository}:pull")];
        let query = format!(
            "mount={}&from={}",
            enc(&digest.to_string()),
            enc(from_repository)
        );
        let url = t.url(&format!("blobs/uploads/?{query}"));
        let resp = self.request(&t, &scopes, "POST", &url, &[], ReqBody::Bytes(&[]))?;
        match resp.status().as_u16() {
            201 => Ok(true),
            202 => {
                if let Some(loc) = header(&resp, "location") {
                    self.cancel_upload(&t, &scopes, &resolve_location(&url, &loc));
                }
                Ok(false)
            }
            _ => Err(self.status_error(&t, "POST", &url, resp, &format!("blob mount {digest}"))),
        }
    }

    /// Uploads a manifest under `reference`'s digest if it has one, else its tag, and returns
    /// its digest (checked against the registry's `Docker-Content-Digest`).
    pub fn put_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest> {
        let t = self.push_target(reference)?;
        let target = manifest_ref(reference);
        let url = t.url(&format!("manifests/{target}"));
        let algorithm = reference
            .digest()
            .map(Digest::algorithm)
            .unwrap_or(skiff_reference::Algorithm::Sha256);
        let digest = digest_of(algorithm, bytes);
        if let Some(want) = reference.digest() {
            if want != &digest {
                return Err(Error::DigestMismatch {
                    what: format!("manifest to push as {reference}"),
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        let resp = self.request(
            &t,
            &[push_scope(&t)],
            "PUT",
            &url,
            &[("Content-Type", media_type)],
            ReqBody::Bytes(bytes),
        )?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error(&t, "PUT", &url, resp, &format!("manifest {target}")));
        }
        if let Some(value) = header(&resp, "docker-content-digest") {
            match Digest::parse(value.trim()) {
                Ok(d) if d.algorithm() == digest.algorithm() && d != digest => {
                    return Err(Error::DigestMismatch {
                        what: format!("manifest pushed as {reference} (Docker-Content-Digest)"),
                        expected: digest,
                        actual: d,
                    })
                }
                Ok(_) => {}
                Err(_) => tracing::debug!(value, "ignoring an invalid Docker-Content-Digest"),
            }
        }
        tracing::debug!(%reference, %digest, "pushed manifest");
        Ok(digest)
    }

    /// The tags of `repo`'s repository (`GET /v2/<name>/tags/list`, following pages).
    pub fn list_tags(&self, repo: &Reference) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let t = self.push_target(repo)?;
        let mut url = t.url("tags/list");
        let mut out = Vec::new();
        for _ in 0..1000 {
            let resp = self.request(&t, &[pull_scope(&t)], "GET", &url, &[], ReqBody::Empty)?;
            if resp.status().as_u16() != 200 {
                return Err(self.status_error(&t, "GET", &url, resp, "tag list"));
            }
            let next = header(&resp, "link").and_then(|l| next_link(&l));
            let body = read_body(resp, 16 << 20, &url, "tag list")?;
            let list: TagList = serde_json::from_slice(&body).map_err(|e| Error::Status {
                method: "GET",
                url: url.clone(),
                status: 200,
                detail: format!(": not a tag list: {e}"),
            })?;
            out.extend(list.tags.unwrap_or_default());
            match next {
                Some(n) => url = resolve_location(&url, &n),
                None => break,
            }
        }
        Ok(out)
    }

    /// Deletes the manifest `reference` names by digest (`DELETE /v2/<name>/manifests/<digest>`).
    pub fn delete_manifest(&self, reference: &Reference) -> Result<()> {
        let t = self.push_target(reference)?;
        let Some(digest) = reference.digest() else {
            return Err(Error::InvalidConfig(format!(
                "cannot delete {reference}: registries delete manifests by digest only"
            )));
        };
        let url = t.url(&format!("manifests/{digest}"));
        let scopes = [format!("repository:{}:delete", t.repository_name())];
        let resp = self.request(&t, &scopes, "DELETE", &url, &[], ReqBody::Empty)?;
        match resp.status().as_u16() {
            200 | 202 => Ok(()),
            _ => Err(self.status_error(&t, "DELETE", &url, resp, &format!("manifest {digest}"))),
        }
    }

    /// `POST /v2/<name>/blobs/uploads/` → the upload's URL.
    fn start_upload(&self, t: &Target, scopes: &[String], query: &str) -> Result<String> {
        let url = t.url(&format!("blobs/uploads/{query}"));
        let resp = self.request(t, scopes, "POST", &url, &[], ReqBody::Bytes(&[]))?;
        if resp.status().as_u16() != 202 {
            return Err(self.status_error(t, "POST", &url, resp, "blob upload"));
        }
        next_location(t, &url, &header(&resp, "location"))
    }

    fn cancel_upload(&self, t: &Target, scopes: &[String], location: &str) {
        if let Err(e) = self.request(t, scopes, "DELETE", location, &[], ReqBody::Empty) {
            tracing::debug!(error = %e, "cancelling an upload failed");
        }
    }
}

fn next_location(t: &Target, request_url: &str, location: &Option<String>) -> Result<String> {
    match location {
        Some(l) if !l.is_empty() => Ok(resolve_location(request_url, l)),
        _ => Err(Error::InvalidHeader {
            registry: t.registry_name().to_owned(),
            header: "Location",
            value: String::new(),
            context: format!("the upload at {request_url}"),
        }),
    }
}

fn with_query(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

/// The target of `<url>; rel="next"` in a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next")
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
        assert_eq!(
            with_query("http://h/u?_state=x", "digest=d"),
            "http://h/u?_state=x&digest=d"
        );
        assert_eq!(with_query("http://h/u", "digest=d"), "http://h/u?digest=d");
    }
}
