//! Showing Docker's JSON progress messages on a terminal the way the Docker CLI does.
//!
//! Used by `skiff-image` (which produces the messages) and the `skiff` CLI (which reads them
//! from skiffd's pull and push streams). The message type is the caller's: it implements
//! [`Line`].

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{self, Write};

/// What the renderer needs of one progress message.
pub trait Line {
    /// The status text (`Pulling fs layer`, `Digest: sha256:...`), if any.
    fn status(&self) -> Option<&str>;
    /// The layer's short ID, or the tag for `Pulling from`.
    fn id(&self) -> Option<&str>;
    /// The rendered progress bar.
    fn bar(&self) -> Option<&str>;
    /// Whether the message carries a `progressDetail` (a layer line to redraw in place).
    fn has_detail(&self) -> bool;
}

/// Draws [`Line`] messages: on a terminal, one line per layer redrawn in place (ANSI
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
    pub fn show<L: Line + ?Sized>(&mut self, p: &L) -> io::Result<()> {
        let Some(status) = p.status() else {
            return Ok(());
        };
        let tracked = p.id().is_some() && (p.has_detail() || p.bar().is_some());
        let text = match p.id() {
            Some(id) => format!("{id}: {status}"),
            None => status.to_owned(),
        };
        if !self.tty {
            if let (true, Some(id)) = (tracked, p.id()) {
                if self.last.get(id).map(String::as_str) == Some(status) {
                    return Ok(());
                }
                self.last.insert(id.to_owned(), status.to_owned());
            }
            writeln!(self.out, "{text}")?;
            return self.out.flush();
        }
        let text = match p.bar() {
            Some(bar) if !bar.is_empty() => format!("{text} {bar}"),
            _ => text,
        };
        match (p.id(), tracked) {
            (Some(id), true) => match self.lines.get(id) {
                None => {
                    self.lines.insert(id.to_owned(), self.count);
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

    struct M(
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        bool,
    );

    impl Line for M {
        fn status(&self) -> Option<&str> {
            self.0
        }
        fn id(&self) -> Option<&str> {
            self.1
        }
        fn bar(&self) -> Option<&str> {
            self.2
        }
        fn has_detail(&self) -> bool {
            self.3
        }
    }

    fn layer(s: &'static str, id: &'static str) -> M {
        M(Some(s), Some(id), None, true)
    }

    #[test]
    fn plain_output_has_one_line_per_status() {
        let mut r = Renderer::new(Vec::new(), false);
        r.show(&M(
            Some("Pulling from library/x"),
            Some("latest"),
            None,
            false,
        ))
        .unwrap();
        r.show(&layer("Pulling fs layer", "aaa")).unwrap();
        r.show(&M(
            Some("Downloading"),
            Some("aaa"),
            Some("[>  ] 1B/10B"),
            true,
        ))
        .unwrap();
        r.show(&M(
            Some("Downloading"),
            Some("aaa"),
            Some("[=> ] 5B/10B"),
            true,
        ))
        .unwrap();
        r.show(&layer("Pull complete", "aaa")).unwrap();
        r.show(&M(Some("Digest: sha256:x"), None, None, false))
            .unwrap();
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
        r.show(&layer("Pulling fs layer", "aaa")).unwrap();
        r.show(&layer("Pulling fs layer", "bbb")).unwrap();
        r.show(&layer("Pull complete", "aaa")).unwrap();
        let s = String::from_utf8(r.into_inner()).unwrap();
        assert!(
            s.ends_with("\x1b[2A\x1b[2K\raaa: Pull complete\r\x1b[2B"),
            "{s:?}"
        );
    }

    #[test]
    fn messages_without_status_are_not_shown() {
        let mut r = Renderer::new(Vec::new(), false);
        r.show(&M(None, Some("x"), None, false)).unwrap();
        assert!(r.into_inner().is_empty());
    }
}
