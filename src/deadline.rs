//! The caller's gRPC deadline (`grpc-timeout`), read the same way by the
//! controller and the node: every RPC answers within the shorter of it and
//! the driver's own deadline for that RPC.

use std::time::Duration;

/// The time the caller gives an RPC, less a margin so the answer arrives
/// before the caller gives up; `None` when it sends no deadline.
pub(crate) fn caller_budget(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|d| d.saturating_sub((d / 20).max(Duration::from_millis(50))))
}

/// Parses a `grpc-timeout` header value: digits and a unit (H, M, S, m, u, n).
pub(crate) fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "S", "10", "10x", "-1S", "123456789S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn caller_budget_keeps_a_margin() {
        let mut m = tonic::metadata::MetadataMap::new();
        assert_eq!(caller_budget(&m), None);
        m.insert("grpc-timeout", "10S".parse().unwrap());
        assert_eq!(caller_budget(&m), Some(Duration::from_millis(9500)));
    }
}
