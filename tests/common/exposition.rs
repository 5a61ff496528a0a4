//! A strict parser for the OpenMetrics text exposition format (the parts a
//! Prometheus scrape of the driver can contain): metadata (`# TYPE`,
//! `# HELP`, `# UNIT`), samples with escaped label values, the `# EOF`
//! terminator. It checks what Prometheus would refuse or misread: samples
//! outside their family or with a suffix their type does not have, families
//! split in two, a unit the name does not end in, repeated series, histogram
//! buckets without `le`, out of order, or disagreeing with `_count`.

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Unknown,
}

#[derive(Clone, Debug)]
pub struct Sample {
    /// The sample's own name (`x_total`, `x_bucket`…).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Clone, Debug)]
pub struct Family {
    pub name: String,
    pub kind: Kind,
    pub help: Option<String>,
    pub unit: Option<String>,
    pub samples: Vec<Sample>,
}

impl Family {
    /// The label names of the family's series (without `le`).
    pub fn label_names(&self) -> std::collections::BTreeSet<String> {
        self.samples
            .iter()
            .flat_map(|s| s.labels.keys())
            .filter(|k| *k != "le")
            .cloned()
            .collect()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
}

fn suffixes(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Counter => &["_total", "_created"],
        Kind::Gauge | Kind::Unknown => &[""],
        Kind::Histogram => &["_bucket", "_count", "_sum", "_created"],
        Kind::Summary => &["", "_count", "_sum", "_created"],
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn number(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("{s:?} is not a number")),
    }
}

/// `name{a="x",b="y"} value [timestamp]` → (name, labels, value).
fn sample(line: &str) -> Result<Sample, String> {
    let end = line
        .find(['{', ' '])
        .ok_or_else(|| "a sample needs a value".to_string())?;
    let name = &line[..end];
    if !is_name(name) {
        return Err(format!("{name:?} is not a metric name"));
    }
    let mut rest = &line[end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        loop {
            // A label name, or the end of the set.
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            if r[start..].starts_with('}') {
                rest = &r[start + 1..];
                break;
            }
            let eq = r[start..].find('=').ok_or("a label needs a value")? + start;
            let key = &r[start..eq];
            if !is_name(key) {
                return Err(format!("{key:?} is not a label name"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key}: the value must be quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '"' => break,
                    '\\' => match chars.next().ok_or("unterminated escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("label {key}: unknown escape \\{c}")),
                    },
                    '\n' => return Err("a newline inside a label value".into()),
                    c => value.push(c),
                }
            }
            if labels.insert(key.to_string(), value).is_some() {
                return Err(format!("label {key} given twice"));
            }
            match chars.peek().map(|(_, c)| *c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                _ => return Err(format!("after label {key}: expected ',' or '}}'")),
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("one space before the value")?;
    let mut parts = rest.split(' ');
    let value = number(parts.next().unwrap_or_default())?;
    if let Some(ts) = parts.next() {
        number(ts)?;
    }
    if parts.next().is_some() {
        return Err("trailing text after the value".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses a whole exposition; every error names the line.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("the exposition must end with \"# EOF\"")?;
    let mut out = Exposition::default();
    let mut current: Option<Family> = None;
    let mut done = std::collections::BTreeSet::new();
    let close = |f: Option<Family>, out: &mut Exposition| -> Result<(), String> {
        if let Some(f) = f {
            check_family(&f)?;
            out.families.insert(f.name.clone(), f);
        }
        Ok(())
    };
    for (n, line) in body.lines().enumerate() {
        let err = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            return Err(err("empty line".into()));
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut words = meta.splitn(3, ' ');
            let (what, name, arg) = (words.next(), words.next(), words.next());
            let name = name.ok_or_else(|| err("metadata without a name".into()))?;
            if !is_name(name) {
                return Err(err(format!("{name:?} is not a family name")));
            }
            if current.as_ref().is_none_or(|f| f.name != name) {
                close(current.take(), &mut out).map_err(err)?;
                if !done.insert(name.to_string()) {
                    return Err(err(format!("family {name} is split")));
                }
                current = Some(Family {
                    name: name.to_string(),
                    kind: Kind::Unknown,
                    help: None,
                    unit: None,
                    samples: Vec::new(),
                });
            }
            let f = current.as_mut().expect("set above");
            if !f.samples.is_empty() {
                return Err(err("metadata after the family's samples".into()));
            }
            match (what, arg) {
                (Some("TYPE"), Some(t)) => {
                    f.kind = match t {
                        "counter" => Kind::Counter,
                        "gauge" => Kind::Gauge,
                        "histogram" => Kind::Histogram,
                        "summary" => Kind::Summary,
                        "unknown" => Kind::Unknown,
                        other => return Err(err(format!("unsupported type {other}"))),
                    }
                }
                (Some("HELP"), Some(h)) => f.help = Some(h.to_string()),
                (Some("UNIT"), Some(u)) => {
                    if !name.ends_with(&format!("_{u}")) {
                        return Err(err(format!("the name does not end in its unit {u}")));
                    }
                    f.unit = Some(u.to_string());
                }
                _ => return Err(err("unknown metadata".into())),
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(err("a comment that is not metadata".into()));
        }
        let s = sample(line).map_err(err)?;
        let f = current
            .as_mut()
            .ok_or_else(|| err("a sample before any family".into()))?;
        let suffix = s
            .name
            .strip_prefix(&f.name)
            .filter(|rest| suffixes(f.kind).contains(rest))
            .ok_or_else(|| {
                err(format!(
                    "{} is not a sample of {:?} family {}",
                    s.name, f.kind, f.name
                ))
            })?;
        if f.kind == Kind::Histogram && suffix == "_bucket" && !s.labels.contains_key("le") {
            return Err(err("a bucket without le".into()));
        }
        if f.samples.iter().any(|o| o.name == s.name && o.labels == s.labels) {
            return Err(err("the series is repeated".into()));
        }
        f.samples.push(s);
    }
    close(current.take(), &mut out)?;
    Ok(out)
}

/// A histogram's buckets rise with `le` and their counts never fall, and the
/// `+Inf` bucket equals `_count`, per series.
fn check_family(f: &Family) -> Result<(), String> {
    if f.kind != Kind::Histogram {
        return Ok(());
    }
    let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for s in &f.samples {
        let mut key = s.labels.clone();
        if s.name.ends_with("_bucket") {
            let le = number(&key.remove("le").expect("checked"))?;
            series.entry(key).or_default().push((le, s.value));
        } else if s.name.ends_with("_count") {
            counts.insert(key, s.value);
        }
    }
    for (key, buckets) in &series {
        let mut sorted = buckets.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        if sorted.windows(2).any(|w| w[1].1 < w[0].1) {
            return Err(format!("{}{key:?}: bucket counts fall", f.name));
        }
        let last = sorted.last().expect("non-empty");
        if last.0 != f64::INFINITY {
            return Err(format!("{}{key:?}: no +Inf bucket", f.name));
        }
        if counts.get(key) != Some(&last.1) {
            return Err(format!("{}{key:?}: _count differs from the +Inf bucket", f.name));
        }
    }
    Ok(())
}

impl Exposition {
    /// The family a PromQL name belongs to (`x_total` → counter `x`).
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.get(name).or_else(|| {
            self.families
                .get(name.strip_suffix("_total")?)
                .filter(|f| f.kind == Kind::Counter)
        })
    }

    /// The sum over the series of `name` whose labels include `labels`: a
    /// counter's or gauge's value, a histogram's count.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let Some(f) = self.family(name) else {
            return 0.0;
        };
        let wanted = match f.kind {
            Kind::Counter => format!("{}_total", f.name),
            Kind::Histogram | Kind::Summary => format!("{}_count", f.name),
            Kind::Gauge | Kind::Unknown => f.name.clone(),
        };
        f.samples
            .iter()
            .filter(|s| s.name == wanted)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Every family by the name PromQL uses, with its type and label names.
    pub fn promql_families(&self) -> BTreeMap<String, (String, std::collections::BTreeSet<String>)> {
        self.families
            .values()
            .map(|f| {
                let (name, kind) = match f.kind {
                    Kind::Counter => (format!("{}_total", f.name), "counter"),
                    Kind::Gauge => (f.name.clone(), "gauge"),
                    Kind::Histogram => (f.name.clone(), "histogram"),
                    Kind::Summary => (f.name.clone(), "summary"),
                    Kind::Unknown => (f.name.clone(), "unknown"),
                };
                (name, (kind.to_string(), f.label_names()))
            })
            .collect()
    }
}
