//! Showing progress messages on a terminal the way the Docker CLI does: the renderer lives in
//! `skiff-progress` (shared with the `skiff` CLI); this module feeds it [`Progress`] messages.

pub use skiff_progress::Renderer;

use crate::Progress;

impl skiff_progress::Line for Progress {
    fn status(&self) -> Option<&str> {
        self.status.as_deref()
    }
    fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    fn bar(&self) -> Option<&str> {
        self.progress.as_deref()
    }
    fn has_detail(&self) -> bool {
        self.progress_detail.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_output_has_one_line_per_status() {
        let mut r = Renderer::new(Vec::new(), false);
        r.show(&Progress::with_id("Pulling from library/x", "latest"))
            .unwrap();
        r.show(&Progress::layer("Pulling fs layer", "aaa")).unwrap();
        r.show(&Progress::bytes("Downloading", "aaa", 1, 10))
            .unwrap();
        r.show(&Progress::bytes("Downloading", "aaa", 5, 10))
            .unwrap();
        r.show(&Progress::layer("Pull complete", "aaa")).unwrap();
        r.show(&Progress::status("Digest: sha256:x")).unwrap();
        let s = String::from_utf8(r.into_inner()).unwrap();
        assert_eq!(
            s,
            "latest: Pulling from library/x\naaa: Pulling fs layer\naaa: Downloading\n\
             aaa: Pull complete\nDigest: sha256:x\n"
        );
    }

    #[test]
    fn terminal_output_redraws_in_place() {
        let mut r = Renderer::new(Vec::new(), true);
        r.show(&Progress::layer("Pulling fs layer", "aaa")).unwrap();
        r.show(&Progress::layer("Pulling fs layer", "bbb")).unwrap();
        r.show(&Progress::layer("Pull complete", "aaa")).unwrap();
        let s = String::from_utf8(r.into_inner()).unwrap();
        assert!(
            s.ends_with("\x1b[2A\x1b[2K\raaa: Pull complete\r\x1b[2B"),
            "{s:?}"
        );
    }
}
