//! FlashBlade NFS export rules (`client(options) ...`): parsed and checked in
//! one place, for the driver config's default rules and for StorageClass
//! and ModifyVolume parameters alike.

const RULE_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "root_squash",
    "no_root_squash",
    "all_squash",
    "no_all_squash",
    "secure",
    "insecure",
    "atime",
    "noatime",
    "fileid_32bit",
    "no_fileid_32bit",
];

/// Why an export rules string was refused; `entry` is the offending
/// `client(options)` as written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExportRuleError {
    #[error("no rules given")]
    Empty,
    #[error("{entry:?} is not client(options)")]
    NotClientOptions { entry: String },
    #[error("{entry:?} is missing its closing ')'")]
    Unclosed { entry: String },
    #[error("{entry:?}: {source}")]
    Client {
        entry: String,
        #[source]
        source: ClientError,
    },
    #[error("{entry:?} admits every host; name the node network instead (or enable allow_wildcard_export)")]
    Wildcard { entry: String },
    #[error("{entry:?}: unknown option {option:?}")]
    UnknownOption { entry: String, option: String },
    #[error("{entry:?}: give rw or ro once")]
    AccessTwice { entry: String },
    #[error(
        "the rules' networks together admit every {family} host; name the node network instead (or enable allow_wildcard_export)"
    )]
    CoversAll { family: &'static str },
}

/// Why a rule's client is not one FlashBlade takes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("no client")]
    Empty,
    #[error("{0:?} is not an IP address, network, host name, @netgroup or *")]
    NotAClient(String),
    #[error("{0:?} is not a network")]
    Network(String),
    #[error("{0:?} has a bad prefix length")]
    PrefixLength(String),
    #[error("{0:?} is a pattern that matches every host name; name the hosts or networks instead")]
    MatchesEveryHost(String),
    #[error("{client:?}: prefix length {bits} is larger than {max}")]
    PrefixTooLong { client: String, bits: u32, max: u32 },
}

/// Checks a FlashBlade export rules string (`client(opt,...) ...`). A client
/// that admits any host (`*`, or a /0 network) is refused unless allowed.
pub fn validate_export_rules(rules: &str, allow_wildcard: bool) -> Result<(), ExportRuleError> {
    if rules.trim().is_empty() {
        return Err(ExportRuleError::Empty);
    }
    let (mut nets4, mut nets6) = (Vec::new(), Vec::new());
    for entry in rules.split_whitespace() {
        let owned = || entry.to_string();
        let (client, rest) = entry
            .split_once('(')
            .ok_or_else(|| ExportRuleError::NotClientOptions { entry: owned() })?;
        let opts = rest
            .strip_suffix(')')
            .ok_or_else(|| ExportRuleError::Unclosed { entry: owned() })?;
        match classify_client(client).map_err(|source| ExportRuleError::Client {
            entry: owned(),
            source,
        })? {
            RuleClient::Any if !allow_wildcard => {
                return Err(ExportRuleError::Wildcard { entry: owned() });
            }
            RuleClient::Net { v6, first, last } => {
                if v6 { &mut nets6 } else { &mut nets4 }.push((first, last));
            }
            _ => {}
        }
        let mut seen_access = false;
        for opt in opts.split(',') {
            if !known_option(opt) {
                return Err(ExportRuleError::UnknownOption {
                    entry: owned(),
                    option: opt.to_string(),
                });
            }
            if opt == "rw" || opt == "ro" {
                if seen_access {
                    return Err(ExportRuleError::AccessTwice { entry: owned() });
                }
                seen_access = true;
            }
        }
    }
    if !allow_wildcard {
        for (nets, max, family) in [(nets4, u32::MAX as u128, "IPv4"), (nets6, u128::MAX, "IPv6")] {
            if covers_everything(nets, max) {
                return Err(ExportRuleError::CoversAll { family });
            }
        }
    }
    Ok(())
}

/// Whether `opt` is an export-rule option FlashBlade takes.
pub fn known_option(opt: &str) -> bool {
    RULE_OPTIONS.contains(&opt)
        || opt
            .strip_prefix("anonuid=")
            .or_else(|| opt.strip_prefix("anongid="))
            .is_some_and(|n| n.parse::<u32>().is_ok())
        || opt.strip_prefix("sec=").is_some_and(|s| {
            s.split(':')
                .all(|x| matches!(x, "sys" | "krb5" | "krb5i" | "krb5p"))
        })
}

/// One `client(options)` entry of a rules string, as the array holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleEntry<'a> {
    pub client: &'a str,
    /// The whole entry, as `nfs.remove_rules` needs it.
    pub text: &'a str,
}

/// The entries of a rules string, in order.
pub fn entries(rules: &str) -> impl Iterator<Item = RuleEntry<'_>> {
    rules.split_whitespace().map(|text| RuleEntry {
        client: text.split_once('(').map_or(text, |(c, _)| c),
        text,
    })
}

/// Whether a rule's client is exactly `ip` (one host, not a network that
/// contains it): the rules node-following exports add and remove.
pub fn client_is(client: &str, ip: std::net::IpAddr) -> bool {
    client.parse::<std::net::IpAddr>().is_ok_and(|c| c == ip)
}

/// The rule that exports to one node address.
pub fn node_rule(ip: std::net::IpAddr, rw: bool, options: &str) -> String {
    format!("{ip}({},{options})", if rw { "rw" } else { "ro" })
}

/// What an export rule's client names.
#[derive(Debug, PartialEq, Eq)]
enum RuleClient {
    /// `*`.
    Any,
    /// An address or network, as an inclusive range (IPv4-mapped IPv6
    /// counts as IPv4).
    Net { v6: bool, first: u128, last: u128 },
    /// `@netgroup`.
    Netgroup,
    /// A host name, or a host-name pattern with `*` / `?` and at least one
    /// literal character (`*.example.com`).
    Host,
}

fn classify_client(client: &str) -> Result<RuleClient, ClientError> {
    use std::net::IpAddr;
    let not_a_client = || ClientError::NotAClient(client.to_string());
    if client.is_empty() {
        return Err(ClientError::Empty);
    }
    if client == "*" {
        return Ok(RuleClient::Any);
    }
    if let Some(group) = client.strip_prefix('@') {
        let ok = !group.is_empty()
            && group.len() <= 255
            && group
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
        return if ok {
            Ok(RuleClient::Netgroup)
        } else {
            Err(not_a_client())
        };
    }
    let (addr, bits) = match client.split_once('/') {
        Some((a, b)) => {
            let ip: IpAddr = a.parse().map_err(|_| ClientError::Network(client.to_string()))?;
            let bits: u32 = b
                .parse()
                .map_err(|_| ClientError::PrefixLength(client.to_string()))?;
            (Some(ip), Some(bits))
        }
        None => (client.parse::<IpAddr>().ok(), None),
    };
    if let Some(ip) = addr {
        let (v6, value, width) = match ip {
            IpAddr::V4(v4) => (false, u32::from(v4) as u128, 32),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // ::ffff:a.b.c.d/n is the IPv4 network a.b.c.d/(n-96).
                Some(v4) if bits.is_none_or(|b| b >= 96) => (false, u32::from(v4) as u128, 32),
                _ => (true, u128::from(v6), 128),
            },
        };
        let mapped_shift = if !v6 && matches!(ip, IpAddr::V6(_)) { 96 } else { 0 };
        let bits = match bits {
            Some(b) if b > width + mapped_shift => {
                return Err(ClientError::PrefixTooLong {
                    client: client.to_string(),
                    bits: b,
                    max: width + mapped_shift,
                });
            }
            Some(b) => b.saturating_sub(mapped_shift),
            None => width,
        };
        let host_bits = width - bits;
        let mask: u128 = match host_bits {
            0 => 0,
            128.. => u128::MAX,
            n => (1u128 << n) - 1,
        };
        let first = value & !mask;
        return Ok(RuleClient::Net {
            v6,
            first,
            last: first | mask,
        });
    }
    // A host name or a pattern: labels of letters, digits, '-', '*', '?'.
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && l.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-*?".contains(&c))
    };
    if client.len() > 253 || !client.split('.').all(label_ok) {
        return Err(not_a_client());
    }
    if !client.bytes().any(|c| c.is_ascii_alphanumeric()) {
        return Err(ClientError::MatchesEveryHost(client.to_string()));
    }
    Ok(RuleClient::Host)
}

/// True when the ranges together cover 0..=max.
fn covers_everything(mut ranges: Vec<(u128, u128)>, max: u128) -> bool {
    ranges.sort();
    let mut next = 0u128; // first address not yet covered
    for (first, last) in ranges {
        if first > next {
            return false;
        }
        if last >= max {
            return true;
        }
        next = next.max(last + 1);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_rules() {
        for ok in [
            "10.0.0.0/16(rw,root_squash)",
            "10.0.0.0/16(rw,no_root_squash,anonuid=1000,anongid=100) @hpc(ro) *.dom.com(ro,sec=krb5:krb5p)",
            "fd00::/64(rw)",
        ] {
            validate_export_rules(ok, false).unwrap();
        }
        for bad in [
            "*(rw)",
            "0.0.0.0/0(rw)",
            "10.0.0.0/8",
            "10.0.0.0/8(rw",
            "10.0.0.0/33(rw)",
            "x(rw,ro)",
            "x(bogus)",
            "-x(rw)",
            "",
            "a;b(rw)",
            // Ways around "admits every host" that once reached the array.
            "0.0.0.0/1(rw) 128.0.0.0/1(rw)",
            "0.0.0.0/2(rw) 64.0.0.0/2(rw) 128.0.0.0/1(rw)",
            "**(rw)",
            "*.*(rw)",
            "?(rw)",
            "::ffff:0.0.0.0/96(rw,no_root_squash)",
            "::/0(rw)",
            "::/1(rw) 8000::/1(rw)",
            "a:b(rw)",
            "@(rw)",
            "10.0.0.0/8(rw) ::ffff:0.0.0.0/97(rw) ::ffff:128.0.0.0/97(rw)",
        ] {
            assert!(validate_export_rules(bad, false).is_err(), "{bad}");
        }
        // Large but not everything; mapped addresses are IPv4.
        validate_export_rules("0.0.0.0/1(rw) 128.0.0.0/2(rw)", false).unwrap();
        validate_export_rules(
            "::ffff:10.0.0.0/104(rw) host-1.example.com(ro) 10.1.2.3(rw)",
            false,
        )
        .unwrap();
        assert_eq!(
            classify_client("::ffff:10.0.0.0/104").unwrap(),
            RuleClient::Net {
                v6: false,
                first: 10 << 24,
                last: (11 << 24) - 1
            }
        );
        validate_export_rules("*(rw,no_root_squash)", true).unwrap();
    }
}
