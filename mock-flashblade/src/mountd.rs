//! NFS export rule evaluation: what the array's mount daemon decides when a
//! client asks to mount a file system. One place owns it: parsing a
//! file system's `nfs.rules` string (and reading an export policy's rules)
//! into [`ExportRule`]s, ordering them as FlashBlade evaluates them (IP
//! addresses and networks, then other clients, then `*`; list order within a
//! group), and finding the first rule that admits a client address.
//!
//! The simulator has no DNS and no NIS, so clients written as host names,
//! wildcard names or `@netgroups` never match an address (a real array
//! would resolve them); they still take their place in the order.

use std::net::IpAddr;

use serde::Serialize;

/// Who a rule is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Client {
    /// `*`: everyone.
    Any,
    /// An address (`prefix` 32 or 128) or a network in CIDR form; the
    /// address is kept masked to the prefix.
    Net { addr: IpAddr, prefix: u8 },
    /// A host name, wildcard name or netgroup: never matches an address here.
    Name(String),
}

/// The evaluation group of a client as FlashBlade orders them: IP
/// addresses and networks first, then other clients, then `*`.
pub(crate) fn client_group(client: &str) -> u8 {
    match parse_client(client) {
        Client::Net { .. } => 0,
        Client::Name(_) => 1,
        Client::Any => 2,
    }
}

/// Reads a rule's client. An IPv4-mapped IPv6 address is taken as the IPv4
/// address it carries. A prefix that is not a number within the address's
/// length makes the client a name (it can match nothing).
pub(crate) fn parse_client(text: &str) -> Client {
    if text == "*" {
        return Client::Any;
    }
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return Client::Name(text.to_string());
    };
    let addr = canonical(addr);
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
            match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Client::Name(text.to_string()),
            }
        }
        Some(_) => return Client::Name(text.to_string()),
    };
    Client::Net {
        addr: mask(addr, prefix),
        prefix,
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; everything else unchanged.
pub(crate) fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// `addr` with every bit past `prefix` cleared.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Whether the network `net/prefix` holds `ip`. Families never mix (an
/// IPv4-mapped address is compared as IPv4).
pub(crate) fn net_contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    let ip = canonical(ip);
    match (net, ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) if prefix <= 32 => mask(ip, prefix) == mask(net, prefix),
        (IpAddr::V6(_), IpAddr::V6(_)) if prefix <= 128 => mask(ip, prefix) == mask(net, prefix),
        _ => false,
    }
}

impl Client {
    pub(crate) fn admits(&self, ip: IpAddr) -> bool {
        match self {
            Client::Any => true,
            Client::Net { addr, prefix } => net_contains(*addr, *prefix, ip),
            Client::Name(_) => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Access {
    Rw,
    Ro,
}

/// What the server does with the ids a client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum Squash {
    /// uid 0 and gid 0 become the anonymous ids.
    #[serde(rename = "root_squash")]
    Root,
    /// Ids pass through unchanged.
    #[serde(rename = "no_root_squash")]
    No,
    /// Every id becomes the anonymous ids.
    #[serde(rename = "all_squash")]
    All,
}

/// The anonymous id when a rule names none.
pub(crate) const NOBODY: u32 = 65534;

/// One rule, as evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExportRule {
    pub(crate) client: Client,
    pub(crate) access: Access,
    pub(crate) squash: Squash,
    pub(crate) anonuid: u32,
    pub(crate) anongid: u32,
    /// The rule as the array shows it (`client(options)`).
    pub(crate) text: String,
}

/// Parses an `nfs.rules` string (space-separated `client(options)`). The
/// array validated it when it was set; an entry that does not parse here
/// admits nobody and is left out. Options as in exports(5): `ro` unless
/// `rw`, `root_squash` unless `no_root_squash`, `all_squash` wins over both,
/// and a later option overrides an earlier one.
pub(crate) fn parse_rules(rules: &str) -> Vec<ExportRule> {
    rules.split_whitespace().filter_map(parse_entry).collect()
}

fn parse_entry(entry: &str) -> Option<ExportRule> {
    let (client, opts) = entry.split_once('(')?;
    let opts = opts.strip_suffix(')')?;
    if client.is_empty() {
        return None;
    }
    let mut access = Access::Ro;
    let mut root_squash = true;
    let mut all_squash = false;
    let (mut anonuid, mut anongid) = (NOBODY, NOBODY);
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "rw" => access = Access::Rw,
            "ro" => access = Access::Ro,
            "root_squash" => root_squash = true,
            "no_root_squash" => root_squash = false,
            "all_squash" => all_squash = true,
            "no_all_squash" => all_squash = false,
            _ => {
                if let Some(n) = opt.strip_prefix("anonuid=") {
                    anonuid = n.parse().ok()?;
                } else if let Some(n) = opt.strip_prefix("anongid=") {
                    anongid = n.parse().ok()?;
                }
                // secure, atime, fileid_32bit, sec=…: no bearing on who may mount.
            }
        }
    }
    Some(ExportRule {
        client: parse_client(client),
        access,
        squash: match (all_squash, root_squash) {
            (true, _) => Squash::All,
            (false, true) => Squash::Root,
            (false, false) => Squash::No,
        },
        anonuid,
        anongid,
        text: entry.to_string(),
    })
}

/// The fields of an export policy rule, as the policy stores them.
pub(crate) struct PolicyRule<'a> {
    pub(crate) client: &'a str,
    pub(crate) permission: &'a str,
    pub(crate) access: &'a str,
    pub(crate) anonuid: Option<i64>,
    pub(crate) anongid: Option<i64>,
}

/// An export policy rule as the mount daemon applies it.
pub(crate) fn from_policy_rule(r: PolicyRule<'_>) -> ExportRule {
    let access = if r.permission == "rw" {
        Access::Rw
    } else {
        Access::Ro
    };
    let squash = match r.access {
        "no-squash" => Squash::No,
        "all-squash" => Squash::All,
        _ => Squash::Root,
    };
    let id = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(NOBODY);
    let opts = [
        r.permission,
        match squash {
            Squash::Root => "root_squash",
            Squash::No => "no_root_squash",
            Squash::All => "all_squash",
        },
    ]
    .join(",");
    ExportRule {
        client: parse_client(r.client),
        access,
        squash,
        anonuid: id(r.anonuid),
        anongid: id(r.anongid),
        text: format!("{}({opts})", r.client),
    }
}

/// The rule that decides for `client`: the first admitting rule in
/// FlashBlade's evaluation order (see [`client_group`]; list order within a
/// group). `None`: the client may not mount.
pub(crate) fn decide(rules: &[ExportRule], client: IpAddr) -> Option<&ExportRule> {
    let group = |r: &ExportRule| match r.client {
        Client::Net { .. } => 0,
        Client::Name(_) => 1,
        Client::Any => 2,
    };
    let mut ordered: Vec<&ExportRule> = rules.iter().collect();
    // Stable: list order is kept within a group.
    ordered.sort_by_key(|r| group(r));
    ordered.into_iter().find(|r| r.client.admits(client))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn decided(rules: &str, client: &str) -> Option<String> {
        decide(&parse_rules(rules), ip(client)).map(|r| r.text.clone())
    }

    #[test]
    fn clients() {
        assert_eq!(parse_client("*"), Client::Any);
        assert_eq!(
            parse_client("10.0.0.7/24"),
            Client::Net {
                addr: ip("10.0.0.0"),
                prefix: 24
            }
        );
        assert_eq!(
            parse_client("10.1.2.3"),
            Client::Net {
                addr: ip("10.1.2.3"),
                prefix: 32
            }
        );
        assert_eq!(
            parse_client("fd00::1/64"),
            Client::Net {
                addr: ip("fd00::"),
                prefix: 64
            }
        );
        assert_eq!(
            parse_client("::ffff:10.0.0.1"),
            Client::Net {
                addr: ip("10.0.0.1"),
                prefix: 32
            }
        );
        for name in [
            "host.dom.com",
            "*.dom.com",
            "@ng",
            "10.0.0.0/33",
            "10.0.0.0/",
            "fd00::/129",
            "10.0.0.0/+8",
        ] {
            assert_eq!(parse_client(name), Client::Name(name.into()), "{name}");
        }
        assert_eq!(client_group("10.0.0.0/8"), 0);
        assert_eq!(client_group("fd00::1"), 0);
        assert_eq!(client_group("@ng"), 1);
        assert_eq!(client_group("*"), 2);
    }

    #[test]
    fn options() {
        let r = &parse_rules("10.0.0.0/24(rw,no_root_squash,anonuid=1000,anongid=100)")[0];
        assert_eq!(
            (r.access, r.squash, r.anonuid, r.anongid),
            (Access::Rw, Squash::No, 1000, 100)
        );
        // Defaults: read-only, root squashed to nobody.
        let r = &parse_rules("*()")[0];
        assert_eq!(
            (r.access, r.squash, r.anonuid),
            (Access::Ro, Squash::Root, NOBODY)
        );
        // all_squash wins; a later option overrides an earlier one.
        assert_eq!(parse_rules("*(no_root_squash,all_squash)")[0].squash, Squash::All);
        assert_eq!(parse_rules("*(rw,ro)")[0].access, Access::Ro);
        assert_eq!(parse_rules("*(ro,rw,sec=krb5,secure)")[0].access, Access::Rw);
        // What does not parse admits nobody.
        assert!(parse_rules("10.0.0.0/8 (rw) *(rw").is_empty());
        assert!(parse_rules("").is_empty());
    }

    #[test]
    fn evaluation_order() {
        // IP rules first, whatever the list order: 10.0.0.5 gets rw.
        let rules = "*(ro) 10.0.0.0/24(rw,no_root_squash)";
        assert_eq!(
            decided(rules, "10.0.0.5").as_deref(),
            Some("10.0.0.0/24(rw,no_root_squash)")
        );
        assert_eq!(decided(rules, "10.9.9.9").as_deref(), Some("*(ro)"));
        // Within a group, the first in list order.
        let rules = "10.0.0.0/16(ro) 10.0.0.5(rw)";
        assert_eq!(decided(rules, "10.0.0.5").as_deref(), Some("10.0.0.0/16(ro)"));
        // Names never match an address; they do not hide later rules.
        assert_eq!(
            decided("host.example(rw) *(ro)", "10.0.0.5").as_deref(),
            Some("*(ro)")
        );
        assert_eq!(decided("host.example(rw)", "10.0.0.5"), None);
        // No rules: no export.
        assert_eq!(decided("", "10.0.0.5"), None);
        // IPv6, and IPv4-mapped clients.
        assert_eq!(
            decided("fd00::/64(rw)", "fd00::42").as_deref(),
            Some("fd00::/64(rw)")
        );
        assert_eq!(decided("fd00::/64(rw)", "fd01::42"), None);
        assert_eq!(
            decided("10.0.0.0/24(rw)", "::ffff:10.0.0.9").as_deref(),
            Some("10.0.0.0/24(rw)")
        );
        assert_eq!(decided("10.0.0.0/24(rw)", "fd00::1"), None);
        assert_eq!(
            decided("0.0.0.0/0(ro)", "192.168.1.1").as_deref(),
            Some("0.0.0.0/0(ro)")
        );
        assert_eq!(decided("0.0.0.0/0(ro)", "fd00::1"), None);
        assert_eq!(decided("::/0(ro)", "fd00::1").as_deref(), Some("::/0(ro)"));
    }

    /// The network holds exactly the addresses that share its first
    /// `prefix` bits, checked bit by bit.
    fn reference_contains(net: &[u8], prefix: u8, ip: &[u8]) -> bool {
        net.len() == ip.len()
            && (0..prefix as usize).all(|i| (net[i / 8] >> (7 - i % 8)) & 1 == (ip[i / 8] >> (7 - i % 8)) & 1)
    }

    fn octets(a: IpAddr) -> Vec<u8> {
        match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    proptest! {
        #[test]
        fn v4_cidr_matches_bitwise(net: u32, ip: u32, prefix in 0u8..=32) {
            let (n, i) = (IpAddr::V4(net.into()), IpAddr::V4(ip.into()));
            prop_assert_eq!(net_contains(n, prefix, i), reference_contains(&octets(n), prefix, &octets(i)));
            // Through the rule text as well.
            let rule = format!("{n}/{prefix}(rw)");
            prop_assert_eq!(decide(&parse_rules(&rule), i).is_some(), reference_contains(&octets(n), prefix, &octets(i)));
        }

        #[test]
        fn v6_cidr_matches_bitwise(net: u128, ip: u128, prefix in 0u8..=128) {
            let (n, i) = (IpAddr::V6(net.into()), IpAddr::V6(ip.into()));
            // Mapped addresses are compared as IPv4: keep them out here.
            prop_assume!(std::net::Ipv6Addr::from(net).to_ipv4_mapped().is_none());
            prop_assume!(std::net::Ipv6Addr::from(ip).to_ipv4_mapped().is_none());
            prop_assert_eq!(net_contains(n, prefix, i), reference_contains(&octets(n), prefix, &octets(i)));
        }

        #[test]
        fn a_network_holds_its_own_addresses(net: u32, prefix in 0u8..=32, host: u32) {
            // Any address made of the network's bits and arbitrary host bits.
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
            let inside = (net & m) | (host & !m);
            prop_assert!(net_contains(IpAddr::V4(net.into()), prefix, IpAddr::V4(inside.into())));
        }

        #[test]
        fn families_never_mix(v4: u32, v6: u128, prefix in 0u8..=32) {
            prop_assume!(std::net::Ipv6Addr::from(v6).to_ipv4_mapped().is_none());
            prop_assert!(!net_contains(IpAddr::V4(v4.into()), prefix, IpAddr::V6(v6.into())));
            prop_assert!(!net_contains(IpAddr::V6(v6.into()), prefix, IpAddr::V4(v4.into())));
        }
    }
}
