//! Signal names and numbers as `kill` takes them ("9", "KILL", "SIGKILL").

use nix::sys::signal::Signal;

pub fn parse(s: &str) -> Result<Signal, String> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal {s:?}"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("unknown signal {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("9"), Ok(Signal::SIGKILL));
        assert_eq!(parse("KILL"), Ok(Signal::SIGKILL));
        assert_eq!(parse("sigterm"), Ok(Signal::SIGTERM));
        assert_eq!(parse("SIGUSR1"), Ok(Signal::SIGUSR1));
        assert!(parse("SIGNOPE").is_err());
        assert!(parse("999").is_err());
    }
}
