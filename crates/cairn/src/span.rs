//! Spans of time as people type them on the command line: `90s`, `30m`,
//! `24h`, `7d`.

use std::time::Duration;

/// A whole number and one unit: `s`, `m`, `h` or `d`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unit = text.chars().last().unwrap_or(' ');
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => 0,
    };
    match text[..text.len() - unit.len_utf8().min(text.len())].parse::<u64>() {
        Ok(n) if seconds > 0 => Ok(Duration::from_secs(n.saturating_mul(seconds))),
        _ => Err(format!("expected a span such as 90s, 30m, 24h or 7d, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_unit_and_refuses_the_rest() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse(" 24h "), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "h", "7", "-1h", "1.5h", "3w", "1é"] {
            assert!(parse(bad).unwrap_err().contains("such as 90s"), "{bad:?}");
        }
    }
}
