//! The names the driver and the array share, each validated by one rule in
//! one place: config, controller, node and ids all parse through these types,
//! so a value accepted at startup is never refused later.

use std::fmt;

/// A value that is not a valid name of its kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value} is not a valid {what}: {rule}")]
pub struct NameError {
    pub what: &'static str,
    /// The offending value, quoted and cut to a readable length.
    pub value: String,
    pub rule: &'static str,
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $rule:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// What a valid value looks like, for messages.
            pub const RULE: &'static str = $rule;

            pub fn as_str(&self) -> &str {
                &self.0
            }

            fn valid(s: &str) -> bool {
                let check: fn(&[u8]) -> bool = $check;
                check(s.as_bytes())
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                if Self::valid(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(NameError {
                        what: $what,
                        value: crate::text::clip(s),
                        rule: $rule,
                    })
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                if Self::valid(&s) { Ok(Self(s)) } else { s.parse() }
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }
    };
}

fn alnum(c: &u8) -> bool {
    c.is_ascii_alphanumeric()
}

name_type!(
    /// An array's short name, as configured and as the first part of every
    /// volume and snapshot id. At most 20 characters so that the longest id
    /// (array, 63-character file system, 36-character array id, policy
    /// marker) stays within CSI's 128 bytes.
    ArrayName,
    "array name",
    "1-20 letters, digits, '-', '_' or '.', starting with a letter or digit",
    |b| (1..=20).contains(&b.len())
        && alnum(&b[0])
        && b.iter().all(|c| alnum(c) || matches!(c, b'-' | b'_' | b'.'))
);

name_type!(
    /// A FlashBlade file-system name (the documented assumption:
    /// `^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`).
    FsName,
    "file-system name",
    "1-63 letters, digits, '_' or '-', starting with a letter or digit",
    |b| (1..=63).contains(&b.len()) && alnum(&b[0]) && b.iter().all(|c| alnum(c) || matches!(c, b'_' | b'-'))
);

name_type!(
    /// The prefix of the file systems the driver creates. No `-`: the first
    /// `-` of a file-system name then always ends the prefix, so two
    /// (prefix, name) pairs can never give one file system; short so
    /// `<prefix>-<name>` fits 63 characters.
    NamePrefix,
    "name prefix",
    "1-20 letters, digits or '_', starting with a letter or digit ('-' would let two prefixes name the same file system)",
    |b| (1..=20).contains(&b.len()) && alnum(&b[0]) && b.iter().all(|c| alnum(c) || *c == b'_')
);

name_type!(
    /// An array object id (file system or snapshot): immutable, so it tells
    /// the object the driver made from a same-named one made later.
    ObjectId,
    "array object id",
    "1-64 letters, digits or '-'",
    |b| (1..=64).contains(&b.len()) && b.iter().all(|c| alnum(c) || *c == b'-')
);

name_type!(
    /// A snapshot suffix (the part after `<fs-name>.`).
    SnapshotSuffix,
    "snapshot suffix",
    "1-64 letters, digits or '-', starting with a letter or digit",
    |b| (1..=64).contains(&b.len()) && alnum(&b[0]) && b.iter().all(|c| alnum(c) || *c == b'-')
);

name_type!(
    /// A FlashBlade export policy name.
    PolicyName,
    "export policy name",
    "1-63 letters, digits, '_' or '-', starting with a letter or digit",
    |b| (1..=63).contains(&b.len()) && alnum(&b[0]) && b.iter().all(|c| alnum(c) || matches!(c, b'_' | b'-'))
);

name_type!(
    /// A host name or IP address that is safe inside `server:/path` and
    /// mount options (no spaces, commas, colons other than IPv6's, or a
    /// leading `-` that a command line would read as an option).
    Host,
    "host name or IP address",
    "a host name (letters, digits, '-', '.') or an IP address",
    |b| {
        let ipv6 = std::str::from_utf8(b).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok());
        !b.is_empty()
            && b.len() <= 253
            && b[0] != b'-'
            && b[0] != b'.'
            && (ipv6 || b.iter().all(|c| alnum(c) || matches!(c, b'-' | b'.')))
    }
);

// The same rules as patterns, for the Helm chart's values schema (see
// `rules`: a test holds each pattern to its check).
impl ArrayName {
    pub const PATTERN: &'static str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,19}$";
}
impl FsName {
    pub const PATTERN: &'static str = "^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$";
}
impl NamePrefix {
    pub const PATTERN: &'static str = "^[A-Za-z0-9][A-Za-z0-9_]{0,19}$";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!("fb01".parse::<ArrayName>().is_ok());
        assert!("a".repeat(20).parse::<ArrayName>().is_ok());
        let err = "a".repeat(21).parse::<ArrayName>().unwrap_err();
        assert!(err.to_string().contains("1-20"), "{err}");
        for bad in ["", "-a", "a/b", "a b"] {
            assert!(bad.parse::<ArrayName>().is_err(), "{bad}");
        }
        assert!("k8s-pvc-1".parse::<FsName>().is_ok());
        assert!("f".repeat(63).parse::<FsName>().is_ok());
        for bad in ["", "-o", "a.b", "a b", &"f".repeat(64)] {
            assert!(bad.parse::<FsName>().is_err(), "{bad}");
        }
        assert!("k8s_col".parse::<NamePrefix>().is_ok());
        assert!("k8s-col".parse::<NamePrefix>().is_err());
        for ok in ["10.0.0.1", "fb01-data.example.com", "fd00::1"] {
            assert!(ok.parse::<Host>().is_ok(), "{ok}");
        }
        for bad in ["", "-o", "a b", "a,b", "a:/x", "host;rm"] {
            assert!(bad.parse::<Host>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_refuses_invalid_values() {
        let ok: ArrayName = serde_json::from_str("\"fb01\"").unwrap();
        assert_eq!(ok, "fb01");
        let err = serde_json::from_str::<ArrayName>("\"a/b\"").unwrap_err();
        assert!(err.to_string().contains("array name"), "{err}");
    }
}
