//! Docker's JSON progress messages (`jsonmessage.JSONMessage` on the wire).

use serde::{Deserialize, Serialize};

/// `progressDetail`: bytes done and total (both absent in `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressDetail {
    /// Bytes done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    /// Bytes in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// One progress message, serialised exactly as dockerd streams it:
/// `{"status":"Downloading","progressDetail":{"current":1,"total":2},"progress":"[=> ] 1B/2B","id":"0123456789ab"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The status text (`Pulling fs layer`, `Digest: sha256:...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Byte counts, present (possibly empty) for layer messages.
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<ProgressDetail>,
    /// The rendered progress bar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// The layer's short ID, or the tag for `Pulling from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Extra data (`{"Tag":..,"Digest":..,"Size":..}` at the end of a push).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
}

impl Progress {
    /// A message without ID: `{"status":"Digest: sha256:..."}`.
    pub fn status(status: impl Into<String>) -> Progress {
        Progress {
            status: Some(status.into()),
            ..Default::default()
        }
    }

    /// A message with an ID and no detail: `{"status":"Pulling from library/busybox","id":"latest"}`.
    pub fn with_id(status: impl Into<String>, id: impl Into<String>) -> Progress {
        Progress {
            status: Some(status.into()),
            id: Some(id.into()),
            ..Default::default()
        }
    }

    /// A layer message with an empty detail: `{"status":"Pulling fs layer","progressDetail":{},"id":".."}`.
    pub fn layer(status: impl Into<String>, id: impl Into<String>) -> Progress {
        Progress {
            status: Some(status.into()),
            progress_detail: Some(ProgressDetail::default()),
            id: Some(id.into()),
            ..Default::default()
        }
    }

    /// A byte-count message (`Downloading`, `Extracting`, `Pushing`) with its bar.
    pub fn bytes(
        status: impl Into<String>,
        id: impl Into<String>,
        current: u64,
        total: u64,
    ) -> Progress {
        Progress {
            status: Some(status.into()),
            progress_detail: Some(ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            progress: Some(bar(current, total)),
            id: Some(id.into()),
            ..Default::default()
        }
    }

    /// The JSON line dockerd would send (without the newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Docker's `units.HumanSize`: decimal units, 4 significant digits (`1.234MB`, `512B`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    #[allow(clippy::cast_precision_loss)]
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", g4(v), UNITS[i])
}

/// Go's `%.4g` for 0 <= v < 1000: 4 significant digits, trailing zeros dropped.
fn g4(v: f64) -> String {
    let decimals = if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    // `%.4g` of 999.96 is "1000"; `{:.1}` gives "1000.0" -> "1000": the same.
    s
}

/// Docker's `JSONProgress.String()` as dockerd renders it (width 200):
/// `[=====>        ]  1.23MB/4.56MB`.
pub fn bar(current: u64, total: u64) -> String {
    if total == 0 {
        return format!("{:>8}", human_size(current));
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let pct = ((current as f64 / total as f64 * 100.0) as u64 / 2).min(50) as usize;
    format!(
        "[{}>{}] {:>8}/{}",
        "=".repeat(pct),
        " ".repeat(50 - pct),
        human_size(current),
        human_size(total)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_matches_docker() {
        assert_eq!(
            Progress::with_id("Pulling from library/busybox", "latest").to_json(),
            r#"{"status":"Pulling from library/busybox","id":"latest"}"#
        );
        assert_eq!(
            Progress::layer("Pulling fs layer", "0123456789ab").to_json(),
            r#"{"status":"Pulling fs layer","progressDetail":{},"id":"0123456789ab"}"#
        );
        let p = Progress::bytes("Downloading", "0123456789ab", 1_200_000, 3_400_000).to_json();
        assert!(
            p.starts_with(r#"{"status":"Downloading","progressDetail":{"current":1200000,"total":3400000},"progress":"[=================>"#),
            "{p}"
        );
        assert!(
            p.ends_with(r#"]    1.2MB/3.4MB","id":"0123456789ab"}"#),
            "{p}"
        );
        assert_eq!(
            Progress::status("Digest: sha256:ab").to_json(),
            r#"{"status":"Digest: sha256:ab"}"#
        );
    }

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(4_261_000), "4.261MB");
        assert_eq!(human_size(12_340_000), "12.34MB");
        assert_eq!(human_size(123_400_000), "123.4MB");
        assert_eq!(bar(10, 10).len(), bar(0, 10).len());
    }
}
