//! Printing for the admin commands: aligned tables, sizes and durations for
//! people, a little YAML for manifests, and a progress bar on stderr that is
//! drawn only on a terminal and never with `--output json`.

use std::io::IsTerminal;
use std::time::Duration;

use serde_json::Value;

/// Left-aligned columns separated by two spaces; `-` for empty cells.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(cell(c).chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(|c| cell(c)).collect()));
    }
    out
}

fn cell(c: &str) -> &str {
    if c.is_empty() { "-" } else { c }
}

/// Bytes in binary units, e.g. `10.0Gi`, `512Mi`, `0`.
pub(crate) fn bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if n.abs() < 1024 {
        return n.to_string();
    }
    let mut v = n as f64;
    let mut unit = "";
    for u in UNITS {
        if v.abs() < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if (v - v.round()).abs() < 0.05 {
        format!("{}{unit}", v.round() as i64)
    } else {
        format!("{v:.1}{unit}")
    }
}

/// A duration in its two largest units, e.g. `23h 59m`, `4m 10s`.
pub(crate) fn duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m {secs}s")
    } else {
        format!("{secs}s")
    }
}

/// A Unix time (seconds) as UTC `YYYY-MM-DD HH:MM:SS`.
pub(crate) fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// JSON as block YAML (maps, lists, strings, numbers, booleans): enough
/// for the manifests `recover` prints. Strings are always quoted.
pub(crate) fn yaml(v: &Value) -> String {
    let mut out = String::new();
    emit(v, 0, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).expect("a string serialises"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                match val {
                    Value::Object(o) if !o.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        emit(val, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        emit(val, indent + 2, out);
                    }
                    Value::Object(_) => out.push_str(&format!("{pad}{k}: {{}}\n")),
                    Value::Array(_) => out.push_str(&format!("{pad}{k}: []\n")),
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(val))),
                }
            }
        }
        Value::Array(a) => {
            for item in a {
                match item {
                    Value::Object(_) | Value::Array(_) => {
                        let mut inner = String::new();
                        emit(item, indent + 2, &mut inner);
                        // The first line goes after the dash.
                        let inner = inner.trim_start().to_string();
                        out.push_str(&format!("{pad}- {inner}"));
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// A progress bar on stderr, or nothing (not a terminal, or JSON output).
pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub(crate) fn new(enabled: bool, what: &str, len: Option<u64>) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = match len {
            Some(n) => indicatif::ProgressBar::new(n).with_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
                    .expect("valid template")
                    .progress_chars("=> "),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {pos}").expect("valid template"),
            ),
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_message(what.to_string());
        Progress(Some(bar))
    }

    pub(crate) fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    pub(crate) fn set_message(&self, what: &str) {
        if let Some(b) = &self.0 {
            b.set_message(what.to_string());
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times() {
        assert_eq!(bytes(0), "0");
        assert_eq!(bytes(10 << 30), "10Gi");
        assert_eq!(bytes(1536 << 20), "1.5Gi");
        assert_eq!(duration(Duration::from_secs(86_399)), "23h 59m");
        assert_eq!(duration(Duration::from_secs(250)), "4m 10s");
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_800_000_000), "2027-01-15 08:00:00");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), String::new()]]);
        assert_eq!(t, "A    LONGER\nxyz  -\n");
    }

    #[test]
    fn yaml_of_a_manifest() {
        let v = serde_json::json!({"apiVersion": "v1", "metadata": {"name": "a"},
            "spec": {"accessModes": ["ReadWriteOnce"], "list": [{"k": "v", "n": 1}], "empty": {}}});
        assert_eq!(
            yaml(&v),
            "apiVersion: \"v1\"\nmetadata:\n  name: \"a\"\nspec:\n  accessModes:\n    - \"ReadWriteOnce\"\n  empty: {}\n  list:\n    - k: \"v\"\n      n: 1\n"
        );
    }
}
