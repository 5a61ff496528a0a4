//! The rules for values a user writes that more than one part of the
//! product checks: the controller and the node (a volume's root owner and
//! mode), config and admin commands (CSI driver names, Kubernetes object
//! names), and outside Rust the Helm chart's values schema. Each rule is
//! one function here and one pattern; `flashblade-csi schema` prints the
//! patterns, the deploy checks hold the chart's schema to them, and the
//! tests below hold each pattern to its function.

/// The largest id chown(2) takes: `u32::MAX` means "leave unchanged".
pub const MAX_ID: u32 = u32::MAX - 1;

/// `rootOwner`: `uid:gid` in decimal, each at most [`MAX_ID`]. The pattern
/// bounds the digits; the range is checked by the parser.
pub const ROOT_OWNER_PATTERN: &str = "^[0-9]{1,10}:[0-9]{1,10}$";

/// `rootMode`: permission bits in octal, at most 7777, with an optional
/// leading 0.
pub const ROOT_MODE_PATTERN: &str = "^0?[0-7]{1,4}$";

/// A CSI driver name as both the CSI spec and the conformance suite accept
/// it, which is also what Kubernetes accepts for a CSIDriver: 2 to 63
/// characters, letters, digits, '-' and '.', starting and ending with a
/// letter.
pub const DRIVER_NAME_PATTERN: &str = "^[A-Za-z][A-Za-z0-9.-]{0,61}[A-Za-z]$";
pub const DRIVER_NAME_RULE: &str = "2-63 letters, digits, '-' and '.', starting and ending with a letter";

/// A Kubernetes object name (DNS subdomain): node, PV, claim, namespace.
pub const OBJECT_NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$";

/// A `rootOwner` or `rootMode` value that breaks its rule; the value is the
/// user's, quoted in the message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("{0:?} is not uid:gid in decimal (each 0-{MAX_ID}), e.g. 1000:100")]
    Owner(String),
    #[error("{0:?} is not an octal mode of at most 7777, e.g. 2775")]
    Mode(String),
}

/// `uid:gid`, both decimal, each at most [`MAX_ID`].
pub fn parse_owner(text: &str) -> Result<(u32, u32), RuleError> {
    let id = |v: &str| -> Option<u32> {
        if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse::<u32>().ok().filter(|n| *n <= MAX_ID)
    };
    text.split_once(':')
        .and_then(|(u, g)| Some((id(u)?, id(g)?)))
        .ok_or_else(|| RuleError::Owner(text.to_string()))
}

/// Octal permission bits, at most 7777 (an optional leading 0: 02775).
pub fn parse_mode(text: &str) -> Result<u32, RuleError> {
    let digits = text.strip_prefix('0').filter(|d| !d.is_empty()).unwrap_or(text);
    (!digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .ok_or_else(|| RuleError::Mode(text.to_string()))
}

pub fn is_driver_name(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=63).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.'))
}

/// Lower-case letters, digits, '-' and '.', starting and ending with a
/// letter or digit, at most 253.
pub fn is_object_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{ArrayName, FsName, NamePrefix};
    use proptest::prelude::*;

    #[test]
    fn owners_and_modes() {
        assert_eq!(parse_owner("1000:100"), Ok((1000, 100)));
        assert_eq!(parse_owner("4294967294:0"), Ok((MAX_ID, 0)));
        for bad in [
            "4294967295:0",
            "0:4294967295",
            "1000",
            "a:b",
            "-1:0",
            "+1:0",
            " 1:0",
            "1:0:0",
            "",
        ] {
            assert!(parse_owner(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_mode("2775"), Ok(0o2775));
        assert_eq!(parse_mode("02775"), Ok(0o2775));
        assert_eq!(parse_mode("0"), Ok(0));
        assert_eq!(parse_mode("700"), Ok(0o700));
        for bad in ["", "8", "17777", "007777", "-1", "0x1", " 755"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    fn matches(pattern: &str, s: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(s)
    }

    /// Strings near each rule's edges: from its own pattern, and from an
    /// alphabet wider than the rule's.
    fn near(pattern: &'static str) -> impl Strategy<Value = String> {
        prop_oneof![
            // The generator takes no anchors; the pattern is anchored at both ends.
            proptest::string::string_regex(pattern.trim_start_matches('^').trim_end_matches('$')).unwrap(),
            "[A-Za-z0-9._:/ +-]{0,70}",
            "[0-9:]{0,24}",
        ]
    }

    proptest! {
        // Each pattern accepts exactly what its parser accepts (for the
        // owner: the pattern is the shape, the parser also the range).
        #[test]
        fn patterns_agree_with_the_parsers(
            mode in near(ROOT_MODE_PATTERN),
            owner in near(ROOT_OWNER_PATTERN),
            driver in near(DRIVER_NAME_PATTERN),
            object in near(OBJECT_NAME_PATTERN),
            array in near(ArrayName::PATTERN),
            prefix in near(NamePrefix::PATTERN),
            fs in near(FsName::PATTERN),
        ) {
            prop_assert_eq!(parse_mode(&mode).is_ok(), matches(ROOT_MODE_PATTERN, &mode), "{:?}", mode);
            if parse_owner(&owner).is_ok() {
                prop_assert!(matches(ROOT_OWNER_PATTERN, &owner), "{:?}", owner);
            } else if matches(ROOT_OWNER_PATTERN, &owner) {
                // Only the range may refuse what the shape allows.
                let (u, g) = owner.split_once(':').unwrap();
                prop_assert!(u.parse::<u64>().unwrap() > MAX_ID as u64 || g.parse::<u64>().unwrap() > MAX_ID as u64, "{:?}", owner);
            }
            prop_assert_eq!(is_driver_name(&driver), matches(DRIVER_NAME_PATTERN, &driver), "{:?}", driver);
            prop_assert_eq!(is_object_name(&object), matches(OBJECT_NAME_PATTERN, &object), "{:?}", object);
            prop_assert_eq!(array.parse::<ArrayName>().is_ok(), matches(ArrayName::PATTERN, &array), "{:?}", array);
            prop_assert_eq!(prefix.parse::<NamePrefix>().is_ok(), matches(NamePrefix::PATTERN, &prefix), "{:?}", prefix);
            prop_assert_eq!(fs.parse::<FsName>().is_ok(), matches(FsName::PATTERN, &fs), "{:?}", fs);
        }
    }
}
