//! Sizes as runc's `update` flags take them ("512m", "1g", "-1").

/// Parses a byte size with an optional binary suffix (b, k, m, g, t, p; "kb"/"kib" too).
/// "-1" means unlimited and is returned as -1.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: f64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(format!("invalid size {s:?}: unknown unit {unit:?}")),
    };
    let v = n * mult;
    if !(0.0..9.2e18).contains(&v) {
        return Err(format!("invalid size {s:?}: out of range"));
    }
    #[allow(clippy::cast_possible_truncation)]
    Ok(v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("-1"), Ok(-1));
        assert!(parse_size("12q").is_err());
        assert!(parse_size("abc").is_err());
    }
}
