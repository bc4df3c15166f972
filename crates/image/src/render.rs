//! Showing progress messages on a terminal the way the Docker CLI does.

use std::collections::HashMap;
use std::io::{self, Write};

use crate::Progress;

/// Draws [`Progress`] messages: on a terminal, one line per layer redrawn in place (ANSI
/// cursor movement, like `docker pull`); otherwise one line per status change.
#[derive(Debug)]
pub struct Renderer<W: Write> {
    out: W,
    tty: bool,
    /// Layer ID -> its line (0 = first) in the current block.
    lines: HashMap<String, usize>,
    count: usize,
    last: HashMap<String, String>,
}

impl<W: Write> Renderer<W> {
    /// A renderer writing to `out`; `tty` selects the in-place display.
    pub fn new(out: W, tty: bool) -> Self {
        Renderer {
            out,
            tty,
            lines: HashMap::new(),
            count: 0,
            last: HashMap::new(),
        }
    }

    /// Shows one message.
    pub fn show(&mut self, p: &Progress) -> io::Result<()> {
        let Some(status) = &p.status else {
            return Ok(());
        };
        let tracked = p.id.is_some() && (p.progress_detail.is_some() || p.progress.is_some());
        let text = match &p.id {
            Some(id) => format!("{id}: {status}"),
            None => status.clone(),
        };
        if !self.tty {
            if let (true, Some(id)) = (tracked, &p.id) {
                if self.last.get(id) == Some(status) {
                    return Ok(());
                }
                self.last.insert(id.clone(), status.clone());
            }
            writeln!(self.out, "{text}")?;
            return self.out.flush();
        }
        let text = match &p.progress {
            Some(bar) if !bar.is_empty() => format!("{text} {bar}"),
            _ => text,
        };
        match (&p.id, tracked) {
            (Some(id), true) => match self.lines.get(id) {
                None => {
                    self.lines.insert(id.clone(), self.count);
                    self.count += 1;
                    write!(self.out, "\x1b[2K\r{text}\n")?;
                }
                Some(&line) => {
                    let up = self.count - line;
                    write!(self.out, "\x1b[{up}A\x1b[2K\r{text}\r\x1b[{up}B")?;
                }
            },
            _ => {
                self.lines.clear();
                self.count = 0;
                write!(self.out, "\x1b[2K\r{text}\n")?;
            }
        }
        self.out.flush()
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
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
