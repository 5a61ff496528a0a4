//! `arrays`: each configured array with its placement labels, capacity, free
//! space and how many of the driver's volumes it holds — what `array: auto`
//! StorageClasses choose among.

use serde::Serialize;

use super::render::{bytes, table};
use super::volumes::list_array;
use super::{AdminError, Output, Report, Session};

/// One array.
#[derive(Debug, Clone, Serialize)]
pub struct ArrayRow {
    pub array: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub capacity: Option<i64>,
    pub used: Option<i64>,
    pub free: Option<i64>,
    /// Live file systems with the array's driver prefixes.
    pub volumes: Option<usize>,
    /// Why the figures are missing, when they are.
    pub error: Option<String>,
}

/// `arrays`.
pub async fn arrays(s: &Session) -> Result<Report, AdminError> {
    let mut rows = Vec::new();
    for cfg in &s.config.arrays {
        let name = cfg.name.to_string();
        let mut row = ArrayRow {
            array: name.clone(),
            labels: cfg
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            capacity: None,
            used: None,
            free: None,
            volumes: None,
            error: None,
        };
        let space = s.client(&name)?.array_space().await;
        let listed = list_array(s, &name).await;
        match (space, listed) {
            (Ok(space), Ok((fss, _))) => {
                let used = space.space.used();
                row.capacity = Some(space.capacity);
                row.used = Some(used);
                row.free = Some((space.capacity - used).max(0));
                row.volumes = Some(fss.iter().filter(|f| !f.destroyed).count());
            }
            (Err(e), _) => row.error = Some(e.to_string()),
            (_, Err(e)) => row.error = Some(e.to_string()),
        }
        rows.push(row);
    }
    let text = match s.output {
        Output::Json => {
            serde_json::to_string_pretty(&serde_json::json!({"arrays": rows})).expect("serialisable") + "\n"
        }
        Output::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let fig = |v: Option<i64>| v.map(bytes).unwrap_or_else(|| "?".into());
                    vec![
                        r.array.clone(),
                        labels.join(","),
                        fig(r.capacity),
                        fig(r.used),
                        fig(r.free),
                        r.volumes.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
                        r.error
                            .clone()
                            .map(|e| format!("unreachable: {e}"))
                            .unwrap_or_else(|| "ok".into()),
                    ]
                })
                .collect();
            table(
                &["ARRAY", "LABELS", "CAPACITY", "USED", "FREE", "VOLUMES", "STATE"],
                &cells,
            )
        }
    };
    let mut report = Report::new(text, s);
    if rows.iter().any(|r| r.error.is_some()) {
        report.code = super::exit::FAILED;
    }
    Ok(report)
}
