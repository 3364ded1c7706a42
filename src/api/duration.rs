//! Durations in the API (`10m`, `1h30m`, `250ms`), written the way
//! Kubernetes and Go write them; every kind parses them here.

use std::time::Duration;

/// Parses `<number><unit>` runs with units `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[digits..];
        let (unit, len) = [("ms", 1u64), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
            .iter()
            .find(|(u, _)| rest.starts_with(u))
            .map(|(u, ms)| (*ms, u.len()))
            .ok_or_else(|| format!("invalid duration {text:?}: units are ms, s, m, h"))?;
        total += Duration::from_millis(number.saturating_mul(unit));
        rest = &rest[len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_kubernetes_durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("").is_err());
    }
}
