//! Image commands: images, pull, push, tag, rmi, save, load, import, history, image prune.

use anyhow::{bail, Context};
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{query, seg, Body, Client};
use crate::containers::{body_to, filters_json};
use crate::format::{self, Format};
use crate::stream;

#[derive(Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// [REPOSITORY[:TAG]]
    repository: Option<String>,
}

#[derive(Args)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short, long = "all-tags")]
    all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    platform: Option<String>,
    name: String,
}

#[derive(Args)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short, long = "all-tags")]
    all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    name: String,
}

#[derive(Args)]
pub struct TagArgs {
    source: String,
    target: String,
}

#[derive(Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    no_prune: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<String>,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    platform: Option<String>,
    /// file|URL|-
    file: String,
    /// [REPOSITORY[:TAG]]
    reference: Option<String>,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    image: String,
}

#[derive(Args)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    filter: Vec<String>,
}

/// `repo[:tag][@digest]` -> (repo, tag or digest); the tag is empty when there is none.
pub fn split_ref(r: &str) -> (String, String) {
    if let Some((repo, digest)) = r.split_once('@') {
        return (repo.to_owned(), digest.to_owned());
    }
    let slash = r.rfind('/').map_or(0, |i| i + 1);
    match r[slash..].rfind(':') {
        Some(i) => (r[..slash + i].to_owned(), r[slash + i + 1..].to_owned()),
        None => (r.to_owned(), String::new()),
    }
}

const IMAGE_HEADERS: format::Headers = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "SIZE"),
];

/// The `images` rows of one image: one per tag (`<none>` without).
pub fn image_rows(img: &Value, trunc: bool, digests: bool) -> Vec<Value> {
    let id = img["Id"].as_str().unwrap_or("");
    let id = if trunc {
        format::short_id(id)
    } else {
        id.to_owned()
    };
    let created = img["Created"].as_i64().unwrap_or(0);
    let size = img["Size"].as_i64().unwrap_or(0);
    let shared = img["SharedSize"].as_i64().unwrap_or(-1);
    let containers = img["Containers"].as_i64().unwrap_or(-1);
    let repo_digests: Vec<&str> = img["RepoDigests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|d| *d != "<none>@<none>")
        .collect();
    let tags: Vec<&str> = img["RepoTags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|t| *t != "<none>:<none>")
        .collect();
    let row = |repo: &str, tag: &str, digest: &str| {
        json!({
            "Containers": if containers < 0 { "N/A".to_owned() } else { containers.to_string() },
            "CreatedAt": format::created_at(created),
            "CreatedSince": format::since(created),
            "Digest": digest,
            "ID": id,
            "Repository": repo,
            "SharedSize": if shared < 0 { "N/A".to_owned() } else { format::human_size_prec(shared, 3) },
            "Size": format::human_size_prec(size, 3),
            "Tag": tag,
            "UniqueSize": if shared < 0 { "N/A".to_owned() } else { format::human_size_prec(size - shared, 3) },
            "VirtualSize": format::human_size(size),
        })
    };
    let digest_of = |repo: &str| {
        repo_digests
            .iter()
            .find_map(|d| {
                d.split_once('@')
                    .filter(|(r, _)| *r == repo)
                    .map(|(_, h)| h.to_owned())
            })
            .unwrap_or_else(|| "<none>".into())
    };
    let mut out = Vec::new();
    if tags.is_empty() {
        if repo_digests.is_empty() {
            out.push(row("<none>", "<none>", "<none>"));
        } else {
            for d in &repo_digests {
                let (r, h) = d.split_once('@').unwrap_or((d, "<none>"));
                out.push(row(r, "<none>", h));
                if !digests {
                    break;
                }
            }
        }
    }
    for t in tags {
        let (repo, tag) = split_ref(t);
        out.push(row(&repo, &tag, &digest_of(&repo)));
    }
    out
}

pub async fn images(c: &Client, a: ImagesArgs) -> anyhow::Result<()> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.repository {
        filters.push(format!("reference={r}"));
    }
    let mut q = Vec::new();
    if a.all {
        q.push(("all", "1".to_owned()));
    }
    if let Some(f) = filters_json(&filters)? {
        q.push(("filters", f));
    }
    let list = c.get(&format!("/images/json{}", query(&q))).await?;
    let mut rows = Vec::new();
    for img in list.as_array().into_iter().flatten() {
        rows.extend(image_rows(img, !a.no_trunc, a.digests));
    }
    let fmt = match (&a.format, a.quiet) {
        (_, true) => "{{.ID}}".to_owned(),
        (Some(f), false) if !f.is_empty() => f.clone(),
        _ if a.digests => {
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
                .to_owned()
        }
        _ => "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}".to_owned(),
    };
    print!("{}", Format::parse(&fmt)?.render(&rows, IMAGE_HEADERS)?);
    Ok(())
}

pub async fn pull(c: &Client, a: PullArgs) -> anyhow::Result<()> {
    let (repo, tag) = split_ref(&a.name);
    let tag = if tag.is_empty() && !a.all_tags {
        if !a.quiet {
            println!("Using default tag: latest");
        }
        "latest".to_owned()
    } else {
        tag
    };
    let mut q = vec![("fromImage", repo.clone())];
    if !tag.is_empty() {
        q.push(("tag", tag.clone()));
    }
    if let Some(p) = &a.platform {
        q.push(("platform", p.clone()));
    }
    let auth = crate::system::auth_header(&repo);
    let resp = c
        .send(
            Method::POST,
            &format!("/images/create{}", query(&q)),
            Body::Empty,
            &[("x-registry-auth", auth)],
        )
        .await?;
    let tty = stream::stdout_is_tty();
    stream::progress(resp.into_body(), std::io::stdout(), tty, a.quiet).await?;
    if a.quiet {
        let full = if tag.starts_with("sha256:") {
            format!("{repo}@{tag}")
        } else {
            format!("{repo}:{tag}")
        };
        println!("{}", normalise(&full));
    }
    Ok(())
}

/// `busybox:1` -> `docker.io/library/busybox:1`, as `pull -q` prints it.
fn normalise(r: &str) -> String {
    let first = r.split('/').next().unwrap_or("");
    let has_domain =
        r.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_domain {
        r.to_owned()
    } else if r.contains('/') {
        format!("docker.io/{r}")
    } else {
        format!("docker.io/library/{r}")
    }
}

pub async fn push(c: &Client, a: PushArgs) -> anyhow::Result<()> {
    let (repo, tag) = split_ref(&a.name);
    if tag.is_empty() && !a.all_tags {
        println!("Using default tag: latest");
    }
    let tag = if tag.is_empty() && !a.all_tags {
        "latest".to_owned()
    } else {
        tag
    };
    let q = if tag.is_empty() {
        String::new()
    } else {
        query(&[("tag", tag)])
    };
    let auth = crate::system::auth_header(&repo);
    let resp = c
        .send(
            Method::POST,
            &format!("/images/{}/push{q}", seg(&repo)),
            Body::Empty,
            &[("x-registry-auth", auth)],
        )
        .await?;
    let tty = stream::stdout_is_tty();
    stream::progress(resp.into_body(), std::io::stdout(), tty, a.quiet).await?;
    if a.quiet {
        println!("{}", a.name);
    }
    Ok(())
}

pub async fn tag(c: &Client, a: TagArgs) -> anyhow::Result<()> {
    let (repo, tag) = split_ref(&a.target);
    let tag = if tag.is_empty() {
        "latest".to_owned()
    } else {
        tag
    };
    c.post(&format!(
        "/images/{}/tag{}",
        seg(&a.source),
        query(&[("repo", repo), ("tag", tag)])
    ))
    .await?;
    Ok(())
}

pub async fn rmi(c: &Client, a: RmiArgs) -> anyhow::Result<()> {
    let mut q = Vec::new();
    if a.force {
        q.push(("force", "1".to_owned()));
    }
    if a.no_prune {
        q.push(("noprune", "1".to_owned()));
    }
    let q = query(&q);
    let mut failed = false;
    for i in &a.images {
        match c
            .json(
                Method::DELETE,
                &format!("/images/{}{q}", seg(i)),
                Body::Empty,
            )
            .await
        {
            Ok(v) => {
                for item in v.as_array().into_iter().flatten() {
                    if let Some(u) = item["Untagged"].as_str() {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = item["Deleted"].as_str() {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(crate::containers::Status {
            code: 1,
            message: String::new(),
        }
        .into());
    }
    Ok(())
}

pub async fn save(c: &Client, a: SaveArgs) -> anyhow::Result<()> {
    if a.output.is_none() && stream::stdout_is_tty() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let q: Vec<(&str, String)> = a.images.iter().map(|i| ("names", i.clone())).collect();
    let resp = c
        .send(
            Method::GET,
            &format!("/images/get{}", query(&q)),
            Body::Empty,
            &[],
        )
        .await?;
    body_to(resp, a.output.as_deref(), "image").await
}

/// A file (or stdin for none or `-`) as a streamed request body.
async fn input_body(path: Option<&str>) -> anyhow::Result<Body> {
    let r: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match path {
        Some(p) if p != "-" => Box::new(
            tokio::fs::File::open(p)
                .await
                .with_context(|| format!("open {p}"))?,
        ),
        _ => {
            if stream::stdin_is_tty() {
                bail!("requested load from stdin, but stdin is empty");
            }
            Box::new(tokio::io::stdin())
        }
    };
    Ok(Body::Stream(r, "application/x-tar"))
}

pub async fn load(c: &Client, a: LoadArgs) -> anyhow::Result<()> {
    let body = input_body(a.input.as_deref()).await?;
    let q = if a.quiet { "?quiet=1" } else { "" };
    let resp = c
        .send(Method::POST, &format!("/images/load{q}"), body, &[])
        .await?;
    let (_, text) = stream::progress(
        resp.into_body(),
        std::io::stdout(),
        stream::stdout_is_tty(),
        false,
    )
    .await?;
    print!("{text}");
    Ok(())
}

pub async fn import(c: &Client, a: ImportArgs) -> anyhow::Result<()> {
    let mut q = vec![("fromSrc", "-".to_owned())];
    if let Some(r) = &a.reference {
        // The docker CLI sends the whole reference as `repo`.
        q.push(("repo", r.clone()));
    }
    if let Some(m) = &a.message {
        q.push(("message", m.clone()));
    }
    if let Some(p) = &a.platform {
        q.push(("platform", p.clone()));
    }
    for ch in &a.change {
        q.push(("changes", ch.clone()));
    }
    let body = input_body(Some(&a.file)).await?;
    let resp = c
        .send(
            Method::POST,
            &format!("/images/create{}", query(&q)),
            body,
            &[],
        )
        .await?;
    let bytes = resp.into_body().collect().await?.to_bytes();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line)?;
        if let Some(e) = v["error"].as_str() {
            bail!("{e}");
        }
        if let Some(s) = v["status"].as_str().or_else(|| v["stream"].as_str()) {
            println!("{}", s.trim_end());
        }
    }
    Ok(())
}

const HISTORY_HEADERS: format::Headers = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

pub async fn history(c: &Client, a: HistoryArgs) -> anyhow::Result<()> {
    let v = c.get(&format!("/images/{}/history", seg(&a.image))).await?;
    let trunc = !a.no_trunc;
    let rows: Vec<Value> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let id = h["Id"].as_str().unwrap_or("<missing>");
            let id = if id == "<missing>" || !trunc { id.to_owned() } else { format::short_id(id) };
            let created = h["Created"].as_i64().unwrap_or(0);
            let by = h["CreatedBy"].as_str().unwrap_or("").replace('\t', " ");
            let by = if trunc { format::ellipsis(&by, 45) } else { by };
            let size = h["Size"].as_i64().unwrap_or(0);
            json!({
                "ID": id,
                "CreatedSince": if a.human { format::since(created) } else { format::created_at(created) },
                "CreatedAt": format::created_at(created),
                "CreatedBy": by,
                "Size": if a.human { format::human_size_prec(size, 3) } else { size.to_string() },
                "Comment": h["Comment"].as_str().unwrap_or(""),
            })
        })
        .collect();
    let fmt = match (&a.format, a.quiet) {
        (_, true) => "{{.ID}}".to_owned(),
        (Some(f), false) if !f.is_empty() => f.clone(),
        _ => "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}".to_owned(),
    };
    print!("{}", Format::parse(&fmt)?.render(&rows, HISTORY_HEADERS)?);
    Ok(())
}

pub async fn prune(c: &Client, a: ImagePruneArgs) -> anyhow::Result<()> {
    if !a.force {
        let what = if a.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        if !crate::system::confirm(&format!("WARNING! This will remove {what}.")) {
            return Ok(());
        }
    }
    let mut filters = a.filter.clone();
    if !a.all {
        filters.push("dangling=true".into());
    } else {
        filters.push("dangling=false".into());
    }
    let q = match filters_json(&filters)? {
        Some(f) => query(&[("filters", f)]),
        None => String::new(),
    };
    let v = c
        .json(Method::POST, &format!("/images/prune{q}"), Body::Empty)
        .await?;
    let items = v["ImagesDeleted"].as_array().cloned().unwrap_or_default();
    if !items.is_empty() {
        println!("Deleted Images:");
        for i in items {
            if let Some(u) = i["Untagged"].as_str() {
                println!("untagged: {u}");
            }
            if let Some(d) = i["Deleted"].as_str() {
                println!("deleted: {d}");
            }
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        format::human_size(v["SpaceReclaimed"].as_i64().unwrap_or(0))
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split() {
        assert_eq!(split_ref("busybox"), ("busybox".into(), String::new()));
        assert_eq!(
            split_ref("localhost:5000/a/b:v1"),
            ("localhost:5000/a/b".into(), "v1".into())
        );
        assert_eq!(
            split_ref("localhost:5000/a"),
            ("localhost:5000/a".into(), String::new())
        );
        assert_eq!(split_ref("a@sha256:00"), ("a".into(), "sha256:00".into()));
        assert_eq!(normalise("busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(normalise("localhost:5000/x:1"), "localhost:5000/x:1");
    }

    #[test]
    fn image_rows_per_tag() {
        let img = json!({"Id": "sha256:0123456789abcdef", "RepoTags": ["a:1", "b:2"], "RepoDigests": ["a@sha256:ff"], "Created": 0, "Size": 4_400_000, "SharedSize": -1, "Containers": -1});
        let rows = image_rows(&img, true, false);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["Repository"], "a");
        assert_eq!(rows[0]["Digest"], "sha256:ff");
        assert_eq!(rows[1]["Digest"], "<none>");
        assert_eq!(rows[0]["ID"], "0123456789ab");
        assert_eq!(rows[0]["Size"], "4.4MB");
        let none =
            json!({"Id": "sha256:00", "RepoTags": [], "RepoDigests": [], "Created": 0, "Size": 0});
        assert_eq!(image_rows(&none, true, false)[0]["Tag"], "<none>");
    }
}
