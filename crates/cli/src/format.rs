//! Docker's output helpers: humanised durations and sizes (go-units), the tab writer the CLI's
//! tables use, and `--format` handling (`table` prefix, headers, `\t`).

use serde_json::Value;

use crate::template::{Template, TemplateError};

/// go-units `HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let minutes = s / 60;
    // Go rounds hours: int(d.Hours() + 0.5).
    let hours = (s + 1800) / 3600;
    if s < 1 {
        "Less than a second".into()
    } else if s == 1 {
        "1 second".into()
    } else if s < 60 {
        format!("{s} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", s / 3600 / 24 / 365)
    }
}

/// Go's `%.{prec}g`.
pub fn go_g(x: f64, prec: usize) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let e = format!("{:.*e}", prec.saturating_sub(1), x);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let strip = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s.to_owned()
        }
    };
    let p = i32::try_from(prec).unwrap_or(i32::MAX);
    if exp < -4 || exp >= p {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip(mant), exp.abs())
    } else {
        let decimals = usize::try_from(p - 1 - exp).unwrap_or(0);
        strip(&format!("{x:.decimals$}"))
    }
}

fn custom_size(size: f64, prec: usize, base: f64, units: &[&str]) -> String {
    let mut s = size;
    let mut i = 0;
    while s >= base && i < units.len() - 1 {
        s /= base;
        i += 1;
    }
    format!("{}{}", go_g(s, prec), units[i])
}

const DECIMAL: &[&str] = &["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// go-units `HumanSizeWithPrecision`.
#[allow(clippy::cast_precision_loss)]
pub fn human_size_prec(size: i64, prec: usize) -> String {
    custom_size(size as f64, prec, 1000.0, DECIMAL)
}

/// go-units `HumanSize` (4 significant digits).
pub fn human_size(size: i64) -> String {
    human_size_prec(size, 4)
}

/// go-units `BytesSize` (binary units), as `docker stats` shows memory.
#[allow(clippy::cast_precision_loss)]
pub fn bytes_size(size: f64) -> String {
    custom_size(size, 4, 1024.0, BINARY)
}

/// Docker's `stringid.TruncateID`: drops an algorithm prefix, keeps 12 characters.
pub fn short_id(id: &str) -> String {
    let id = id.split_once(':').map_or(id, |(_, h)| h);
    id.chars().take(12).collect()
}

/// Docker's `formatter.Ellipsis`.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Go's tabwriter as the Docker CLI sets it up (minwidth 10, tabwidth 1, padding 3, spaces):
/// each tab-terminated cell is padded to its column's width; the text after a line's last tab
/// is not a cell.
pub fn tabwrite(text: &str) -> String {
    tabwrite_min(text, 10)
}

/// [`tabwrite`] with another minimum cell width (`docker top` uses 20).
pub fn tabwrite_min(text: &str, min: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_terminator('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    let cols = lines
        .iter()
        .map(|l| l.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for l in &lines {
        for (i, c) in l.iter().enumerate().take(l.len().saturating_sub(1)) {
            widths[i] = widths[i].max(c.chars().count() + 3);
        }
    }
    let mut out = String::new();
    for l in &lines {
        for (i, c) in l.iter().enumerate() {
            out.push_str(c);
            if i + 1 < l.len() {
                let w = widths[i].max(min);
                out.push_str(&" ".repeat(w.saturating_sub(c.chars().count())));
            }
        }
        out.push('\n');
    }
    out
}

/// A `--format` value: `table ...`, a Go template, or `json`.
pub struct Format {
    template: Template,
    table: bool,
}

/// The Docker CLI's header for a field (`ID` -> `CONTAINER ID` in `ps`, ...).
pub type Headers = &'static [(&'static str, &'static str)];

impl Format {
    /// Parses a `--format` value the way the Docker CLI does (`\t`, `\n` escapes; `json` is
    /// `{{json .}}`).
    pub fn parse(src: &str) -> Result<Format, TemplateError> {
        let src = if src == "json" { "{{json .}}" } else { src };
        let (table, body) = match src.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, src),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        Ok(Format {
            template: Template::parse(&body)?,
            table,
        })
    }

    /// Renders the rows (and, for a table, the header line), one line each.
    pub fn render(&self, rows: &[Value], headers: Headers) -> Result<String, TemplateError> {
        let mut out = String::new();
        if self.table {
            let mut h = serde_json::Map::new();
            for (k, v) in headers {
                h.insert((*k).to_owned(), Value::String((*v).to_owned()));
            }
            let line = self.template.render(&Value::Object(h))?;
            out.push_str(&line);
            out.push('\n');
        }
        for r in rows {
            out.push_str(&self.template.render(r)?);
            out.push('\n');
        }
        Ok(if self.table { tabwrite(&out) } else { out })
    }
}

/// "2 minutes ago" style text for a unix time.
pub fn since(unix: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    format!("{} ago", human_duration(now - unix))
}

/// A unix time as Docker's `CreatedAt` (`2006-01-02 15:04:05 -0700 MST`), in UTC.
pub fn created_at(unix: i64) -> String {
    let dt = chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default();
    dt.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn durations_like_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(3), "3 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(150), "2 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(800 * 86400), "2 years");
    }

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size_prec(0, 3), "0B");
        assert_eq!(human_size_prec(999, 3), "999B");
        assert_eq!(human_size_prec(4_096, 3), "4.1kB");
        assert_eq!(human_size_prec(1_234_567, 3), "1.23MB");
        assert_eq!(human_size_prec(123_456_789, 3), "123MB");
        assert_eq!(human_size(4_400_000), "4.4MB");
        assert_eq!(bytes_size(1_048_576.0), "1MiB");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
        assert_eq!(go_g(1.0e-5, 3), "1e-05");
    }

    #[test]
    fn ids_and_ellipsis() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(
            ellipsis("sh -c 'exit 3; echo long'", 20),
            "sh -c 'exit 3; echo…"
        );
        assert_eq!(ellipsis("sh", 20), "sh");
    }

    #[test]
    fn tab_writer_pads_like_docker() {
        let t = tabwrite("CONTAINER ID\tNAMES\nabc\tx\n");
        assert_eq!(t, "CONTAINER ID   NAMES\nabc            x\n");
        let t = tabwrite("A\tB\tC\nlonger-cell\tb\tc\n");
        assert_eq!(t, "A             B         C\nlonger-cell   b         c\n");
    }

    #[test]
    fn table_formats_have_headers() {
        let f = Format::parse("table {{.ID}}\\t{{.Name}}").unwrap();
        let rows = vec![json!({"ID": "abc", "Name": "n"})];
        let out = f
            .render(&rows, &[("ID", "CONTAINER ID"), ("Name", "NAME")])
            .unwrap();
        assert_eq!(out, "CONTAINER ID   NAME\nabc            n\n");
        let f = Format::parse("{{.ID}}").unwrap();
        assert_eq!(f.render(&rows, &[]).unwrap(), "abc\n");
        let f = Format::parse("json").unwrap();
        assert_eq!(
            f.render(&rows, &[]).unwrap(),
            "{\"ID\":\"abc\",\"Name\":\"n\"}\n"
        );
    }
}
