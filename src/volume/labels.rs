//! Array labels (`rack=7b`, `env=prod`) and the label selectors that pick
//! arrays by them, in the syntax Kubernetes users already write:
//! `rack=7b,env in (prod,staging),!retired`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A label key or value that breaks Kubernetes' label syntax, or a selector
/// that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LabelError(String);

fn name_ok(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `[prefix/]name`: the prefix a DNS subdomain, the name as a value.
fn check_key(k: &str) -> Result<(), LabelError> {
    let ok = match k.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|l| {
                    !l.is_empty()
                        && l.bytes()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                })
                && name_ok(name)
        }
        None => name_ok(k),
    };
    if ok {
        Ok(())
    } else {
        Err(LabelError(format!(
            "{} is not a label key ([prefix/]name, the name 1-63 letters, digits, '-', '_', '.')",
            crate::text::clip(k)
        )))
    }
}

fn check_value(v: &str) -> Result<(), LabelError> {
    if v.is_empty() || name_ok(v) {
        Ok(())
    } else {
        Err(LabelError(format!(
            "{} is not a label value (at most 63 letters, digits, '-', '_', '.')",
            crate::text::clip(v)
        )))
    }
}

/// An array's labels. Written `k=v,k2=v2` on the command line and as a
/// table in the config file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "BTreeMap<String, String>", into = "BTreeMap<String, String>")]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl TryFrom<BTreeMap<String, String>> for Labels {
    type Error = LabelError;
    fn try_from(map: BTreeMap<String, String>) -> Result<Self, LabelError> {
        for (k, v) in &map {
            check_key(k)?;
            check_value(v)?;
        }
        Ok(Labels(map))
    }
}

impl From<Labels> for BTreeMap<String, String> {
    fn from(l: Labels) -> Self {
        l.0
    }
}

impl FromStr for Labels {
    type Err = LabelError;
    fn from_str(s: &str) -> Result<Self, LabelError> {
        let mut map = BTreeMap::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| LabelError(format!("{} is not key=value", crate::text::clip(pair))))?;
            if map.insert(k.trim().to_string(), v.trim().to_string()).is_some() {
                return Err(LabelError(format!(
                    "label {} is given twice",
                    crate::text::clip(k)
                )));
            }
        }
        map.try_into()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::Exists(k) => labels.get(k).is_some(),
            Requirement::NotExists(k) => labels.get(k).is_none(),
            Requirement::Equals(k, v) => labels.get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !labels.get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        }
    }
}

/// A Kubernetes-style label selector: requirements separated by commas, all
/// of which must hold. `key`, `!key`, `key=value` (or `==`), `key!=value`,
/// `key in (a,b)`, `key notin (a,b)`. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|r| r.matches(labels))
    }
}

/// Splits at commas outside parentheses.
fn split_top(s: &str) -> Result<Vec<&str>, LabelError> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(LabelError(format!(
                "unbalanced parentheses in {}",
                crate::text::clip(s)
            )));
        }
    }
    if depth != 0 {
        return Err(LabelError(format!(
            "unbalanced parentheses in {}",
            crate::text::clip(s)
        )));
    }
    out.push(&s[start..]);
    Ok(out)
}

fn parse_requirement(r: &str) -> Result<Requirement, LabelError> {
    let bad = || {
        LabelError(format!(
            "{} is not a selector requirement (key, !key, key=value, key!=value, key in (a,b), key notin (a,b))",
            crate::text::clip(r)
        ))
    };
    let r = r.trim();
    if let Some(k) = r.strip_prefix('!') {
        let k = k.trim();
        check_key(k)?;
        return Ok(Requirement::NotExists(k.to_string()));
    }
    for (op, ctor) in [
        ("!=", Requirement::NotEquals as fn(String, String) -> Requirement),
        ("==", Requirement::Equals),
        ("=", Requirement::Equals),
    ] {
        if let Some((k, v)) = r.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            check_key(k)?;
            check_value(v)?;
            return Ok(ctor(k.to_string(), v.to_string()));
        }
    }
    if let Some(open) = r.find('(') {
        let head = r[..open].trim();
        let inner = r[open + 1..].strip_suffix(')').ok_or_else(bad)?;
        let (k, op) = head.rsplit_once(char::is_whitespace).ok_or_else(bad)?;
        let k = k.trim();
        check_key(k)?;
        let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
        for v in &values {
            check_value(v)?;
        }
        return match op {
            "in" => Ok(Requirement::In(k.to_string(), values)),
            "notin" => Ok(Requirement::NotIn(k.to_string(), values)),
            _ => Err(bad()),
        };
    }
    check_key(r).map_err(|_| bad())?;
    Ok(Requirement::Exists(r.to_string()))
}

impl FromStr for Selector {
    type Err = LabelError;
    fn from_str(s: &str) -> Result<Self, LabelError> {
        if s.trim().is_empty() {
            return Ok(Selector::default());
        }
        split_top(s)?
            .into_iter()
            .map(parse_requirement)
            .collect::<Result<Vec<_>, _>>()
            .map(Selector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &str) -> Labels {
        s.parse().unwrap()
    }

    #[test]
    fn labels() {
        let a = l("rack=7b, env=prod");
        assert_eq!(a.get("rack"), Some("7b"));
        assert_eq!(a.to_string(), "env=prod,rack=7b");
        assert!("rack".parse::<Labels>().is_err());
        assert!("ra ck=1".parse::<Labels>().is_err());
        assert!("rack=1,rack=2".parse::<Labels>().is_err());
        assert!("pure.com/zone=a".parse::<Labels>().is_ok());
        let map: Labels =
            toml::from_str::<BTreeMap<String, Labels>>("x = { rack = \"7b\" }").unwrap()["x"].clone();
        assert_eq!(map, l("rack=7b"));
        assert!(toml::from_str::<BTreeMap<String, Labels>>("x = { \"bad key\" = \"v\" }").is_err());
    }

    #[test]
    fn selectors() {
        let prod = l("rack=7b,env=prod");
        let staging = l("rack=7c,env=staging");
        let bare = Labels::default();
        let cases = [
            ("", [true, true, true]),
            ("rack=7b", [true, false, false]),
            ("rack==7b", [true, false, false]),
            ("rack!=7b", [false, true, true]),
            ("env in (prod, staging)", [true, true, false]),
            ("env notin (prod)", [false, true, true]),
            ("env", [true, true, false]),
            ("!env", [false, false, true]),
            ("rack=7b,env in (prod,staging)", [true, false, false]),
        ];
        for (sel, want) in cases {
            let s: Selector = sel.parse().unwrap();
            for (labels, w) in [&prod, &staging, &bare].into_iter().zip(want) {
                assert_eq!(s.matches(labels), w, "{sel:?} on {labels}");
            }
        }
        for bad in [
            "env in prod",
            "env in (prod",
            "a b",
            "=x",
            "env in (a,b))",
            "x=y z",
        ] {
            assert!(bad.parse::<Selector>().is_err(), "{bad}");
        }
    }
}
