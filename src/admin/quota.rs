//! `quota show|set|remove`: a volume's hard limit and default user/group
//! quotas (changed through the same path as a VolumeAttributesClass), and
//! explicit per-uid / per-gid quotas with their usage.

use std::collections::HashMap;

use serde::Serialize;

use super::render::{bytes, table};
use super::{AdminError, Output, Report, Session, Target};
use crate::controller::params::parse_quantity;
use crate::flashblade::models::QuotaEntry;
use crate::flashblade::ops::QuotaKind;

/// One explicit quota.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaRow {
    /// `user` or `group`.
    pub kind: &'static str,
    pub id: Option<i64>,
    pub name: Option<String>,
    pub quota: i64,
    pub usage: i64,
    pub percent: Option<f64>,
}

/// A volume's quota settings.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaView {
    pub array: String,
    pub file_system: String,
    pub volume_id: String,
    pub pv: Option<String>,
    pub pvc: Option<String>,
    pub provisioned: Option<i64>,
    pub used: i64,
    pub hard_limit: bool,
    /// Bytes; 0 = none.
    pub default_user_quota: i64,
    pub default_group_quota: i64,
    pub quotas: Vec<QuotaRow>,
}

fn quota_row(kind: QuotaKind, q: &QuotaEntry) -> QuotaRow {
    let p = q.principal();
    QuotaRow {
        kind: kind.word(),
        id: p.and_then(|p| p.id),
        name: p.and_then(|p| p.name.clone()),
        quota: q.quota,
        usage: q.usage,
        percent: (q.quota > 0).then(|| ((q.usage as f64) * 1000.0 / q.quota as f64).round() / 10.0),
    }
}

async fn view(s: &Session, t: &Target) -> Result<QuotaView, AdminError> {
    let client = s.client(&t.array)?;
    // Fresh figures (a change just made shows).
    let fs = client
        .find_file_system_by_id(&t.fs.id)
        .await?
        .unwrap_or_else(|| t.fs.clone());
    let mut quotas = Vec::new();
    for kind in [QuotaKind::User, QuotaKind::Group] {
        let mut list = client.quotas(kind, &fs.name).await?;
        list.sort_by_key(|q| q.principal().and_then(|p| p.id));
        quotas.extend(list.iter().map(|q| quota_row(kind, q)));
    }
    Ok(QuotaView {
        array: t.array.to_string(),
        file_system: fs.name.clone(),
        volume_id: t.volume_id.clone(),
        pv: t.pv.as_ref().map(|p| p.name.clone()),
        pvc: t.claim.as_ref().map(|c| c.to_string()),
        provisioned: fs.provisioned,
        used: fs.space.used(),
        hard_limit: fs.hard_limit_enabled,
        default_user_quota: fs.default_user_quota.unwrap_or(0),
        default_group_quota: fs.default_group_quota.unwrap_or(0),
        quotas,
    })
}

fn render(s: &Session, v: &QuotaView, note: Option<String>) -> Report {
    let text = match s.output {
        Output::Json => serde_json::to_string_pretty(v).expect("serialisable") + "\n",
        Output::Table => {
            let none = |b: i64| if b == 0 { "none".to_string() } else { bytes(b) };
            let mut t = String::new();
            if let Some(n) = note {
                t.push_str(&n);
                t.push('\n');
            }
            t.push_str(&format!(
                "file system          {} (array {})\n",
                v.file_system, v.array
            ));
            t.push_str(&format!("volume id            {}\n", v.volume_id));
            t.push_str(&format!(
                "PV / PVC             {} / {}\n",
                v.pv.as_deref().unwrap_or("-"),
                v.pvc.as_deref().unwrap_or("-")
            ));
            t.push_str(&format!(
                "size                 {} ({})\n",
                v.provisioned.map(bytes).unwrap_or_else(|| "unlimited".into()),
                if v.hard_limit {
                    "hard limit: writes stop there"
                } else {
                    "no hard limit"
                }
            ));
            t.push_str(&format!("used                 {}\n", bytes(v.used)));
            t.push_str(&format!("default user quota   {}\n", none(v.default_user_quota)));
            t.push_str(&format!("default group quota  {}\n", none(v.default_group_quota)));
            if v.quotas.is_empty() {
                t.push_str("explicit quotas      none\n");
            } else {
                t.push('\n');
                let cells: Vec<Vec<String>> = v
                    .quotas
                    .iter()
                    .map(|q| {
                        vec![
                            q.kind.to_string(),
                            q.id.map(|i| i.to_string()).unwrap_or_default(),
                            q.name.clone().unwrap_or_default(),
                            bytes(q.quota),
                            bytes(q.usage),
                            q.percent.map(|p| format!("{p:.1}%")).unwrap_or_default(),
                        ]
                    })
                    .collect();
                t.push_str(&table(&["KIND", "ID", "NAME", "QUOTA", "USED", "USED%"], &cells));
            }
            t
        }
    };
    Report::new(text, s)
}

/// `quota show`.
pub async fn show(s: &Session, volume: &str) -> Result<Report, AdminError> {
    let t = s.resolve(volume).await?;
    let v = view(s, &t).await?;
    Ok(render(s, &v, None))
}

/// What `quota set` changes.
#[derive(Debug, Clone, Default)]
pub struct QuotaChange {
    pub hard_limit: Option<String>,
    pub default_user_quota: Option<String>,
    pub default_group_quota: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub quota: Option<String>,
}

fn refuse_unmanaged(t: &Target) -> Result<(), AdminError> {
    if t.fs.destroyed {
        return Err(AdminError::Refused(format!(
            "file system {} is destroyed; recover it first (flashblade-csi recover)",
            t.fs.name
        )));
    }
    if !t.managed {
        return Err(AdminError::Refused(format!(
            "{} is an imported (static) file system; the driver never changes it — manage its quotas on the array",
            t.fs.name
        )));
    }
    Ok(())
}

/// `quota set`.
pub async fn set(s: &Session, volume: &str, change: &QuotaChange) -> Result<Report, AdminError> {
    let principal = match (change.uid, change.gid) {
        (Some(_), Some(_)) => return Err(AdminError::Usage("give --uid or --gid, not both".into())),
        (Some(u), None) => Some((QuotaKind::User, u)),
        (None, Some(g)) => Some((QuotaKind::Group, g)),
        (None, None) => None,
    };
    let bytes = match (&principal, &change.quota) {
        (Some(_), None) => return Err(AdminError::Usage("--uid/--gid needs --quota SIZE".into())),
        (None, Some(_)) => return Err(AdminError::Usage("--quota needs --uid or --gid".into())),
        (Some(_), Some(q)) => {
            let b = parse_quantity(q).map_err(|e| AdminError::BadArgument {
                what: "--quota".into(),
                source: e.into(),
            })?;
            if b == 0 {
                return Err(AdminError::Usage(
                    "--quota must be greater than 0 (to drop a quota: quota remove)".into(),
                ));
            }
            Some(b)
        }
        (None, None) => None,
    };
    // The volume-level settings go through the StorageClass parser.
    let mut params = HashMap::new();
    for (key, v) in [
        ("hardLimit", &change.hard_limit),
        ("defaultUserQuota", &change.default_user_quota),
        ("defaultGroupQuota", &change.default_group_quota),
    ] {
        if let Some(v) = v {
            params.insert(key.to_string(), v.clone());
        }
    }
    if params.is_empty() && principal.is_none() {
        return Err(AdminError::Usage(
            "nothing to set: give --hard-limit, --default-user-quota, --default-group-quota, or --uid/--gid with --quota".into(),
        ));
    }
    // Bad values are refused before anything is looked up.
    let array = s.default_array()?;
    if let Some(cfg) = s.config.array(array) {
        crate::controller::params::MutableParams::parse(&params, cfg)?;
    }
    let t = s.resolve(volume).await?;
    refuse_unmanaged(&t)?;
    if !params.is_empty() {
        s.service.modify_volume(&t.volume_id, params).await?;
    }
    let mut note = None;
    if let (Some((kind, id)), Some(b)) = (principal, bytes) {
        s.client(&t.array)?.set_quota(kind, &t.fs.name, id, b).await?;
        note = Some(format!(
            "{} {id}: quota set to {}",
            kind.word(),
            super::render::bytes(b)
        ));
    }
    let v = view(s, &t).await?;
    Ok(render(s, &v, note))
}

/// `quota remove`.
pub async fn remove(
    s: &Session,
    volume: &str,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<Report, AdminError> {
    let (kind, id) = match (uid, gid) {
        (Some(u), None) => (QuotaKind::User, u),
        (None, Some(g)) => (QuotaKind::Group, g),
        _ => return Err(AdminError::Usage("give exactly one of --uid and --gid".into())),
    };
    let t = s.resolve(volume).await?;
    refuse_unmanaged(&t)?;
    let existed = s.client(&t.array)?.remove_quota(kind, &t.fs.name, id).await?;
    let note = if existed {
        format!(
            "{} {id}: quota removed (the default quota applies again)",
            kind.word()
        )
    } else {
        format!("{} {id}: had no quota; nothing to remove", kind.word())
    };
    let v = view(s, &t).await?;
    Ok(render(s, &v, Some(note)))
}
