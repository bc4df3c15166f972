//! Records the git commit for `--version` (dockerd parses the "commit:" line), and links the
//! release skiff-runtime statically (static-pie; see skiff-linkstatic for why and how).
fn main() {
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-env-changed=SKIFF_COMMIT");
    if std::env::var("SKIFF_COMMIT").is_err() {
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env=SKIFF_COMMIT={commit}");
    }
    skiff_linkstatic::link_static("skiff-runtime", skiff_linkstatic::Layout::Pie);
}
