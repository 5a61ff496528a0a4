//! `quotas/users` and `quotas/groups`: per-uid / per-gid limits on a file
//! system, with usage measured from its directory.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{MethodRouter, get};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Array, Store, read, write};
use crate::api::{ApiError, ApiResult, Body, Query, Selector, list_envelope};
use crate::data;

pub(super) fn routes<S: Store>() -> Router<Arc<S>> {
    Router::new()
        .route("/api/{version}/quotas/users", methods(QuotaKind::User))
        .route("/api/{version}/quotas/groups", methods(QuotaKind::Group))
}

/// The same four operations on either table.
fn methods<S: Store>(kind: QuotaKind) -> MethodRouter<Arc<S>> {
    get(move |State(s): State<Arc<S>>, q: Query| async move {
        read(s, move |a| a.get_quotas(kind, &q)).await
    })
    .post(
        move |State(s): State<Arc<S>>, q: Query, Body(b): Body<QuotaBody>| async move {
            write(s, move |a| a.post_quotas(kind, &q, b.quota)).await
        },
    )
    .patch(
        move |State(s): State<Arc<S>>, q: Query, Body(b): Body<QuotaBody>| async move {
            write(s, move |a| a.patch_quotas(kind, &q, b.quota)).await
        },
    )
    .delete(move |State(s): State<Arc<S>>, q: Query| async move {
        write(s, move |a| a.delete_quotas(kind, &q)).await
    })
}

/// The POST and PATCH body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct QuotaBody {
    /// Bytes; required.
    quota: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Quota {
    pub fs_id: String,
    pub fs_name: String,
    pub principal_id: u32,
    pub principal_name: Option<String>,
    pub quota: i64,
}

fn lookup_passwd(file: &str, by_name: Option<&str>, by_id: Option<u32>) -> Option<(u32, String)> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let id: u32 = f.get(2)?.parse().ok()?;
        let name = f.first()?.to_string();
        let hit = by_name.is_some_and(|n| n == name) || by_id.is_some_and(|i| i == id);
        hit.then_some((id, name))
    })
}

/// A uid or gid with its name when the system knows one.
type Principal = (u32, Option<String>);

/// Which quota table an operation works on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuotaKind {
    User,
    Group,
}

impl QuotaKind {
    fn ids_param(self) -> &'static str {
        match self {
            QuotaKind::User => "uids",
            QuotaKind::Group => "gids",
        }
    }
    fn names_param(self) -> &'static str {
        match self {
            QuotaKind::User => "user_names",
            QuotaKind::Group => "group_names",
        }
    }
    fn db(self) -> &'static str {
        match self {
            QuotaKind::User => "/etc/passwd",
            QuotaKind::Group => "/etc/group",
        }
    }
    fn word(self) -> &'static str {
        match self {
            QuotaKind::User => "User",
            QuotaKind::Group => "Group",
        }
    }
}

impl Array {
    fn quotas(&self, kind: QuotaKind) -> &Vec<Quota> {
        match kind {
            QuotaKind::User => &self.st.user_quotas,
            QuotaKind::Group => &self.st.group_quotas,
        }
    }

    fn quotas_mut(&mut self, kind: QuotaKind) -> &mut Vec<Quota> {
        match kind {
            QuotaKind::User => &mut self.st.user_quotas,
            QuotaKind::Group => &mut self.st.group_quotas,
        }
    }

    fn quota_json(&self, kind: QuotaKind, q: &Quota) -> Value {
        let fs = self.st.file_systems.get(&q.fs_name);
        let usage = data::usage(&self.fs_dir(&q.fs_name));
        let used = match kind {
            QuotaKind::User => usage.by_uid.get(&q.principal_id),
            QuotaKind::Group => usage.by_gid.get(&q.principal_id),
        }
        .copied()
        .unwrap_or(0);
        let default = fs
            .map(|f| match kind {
                QuotaKind::User => f.default_user_quota,
                QuotaKind::Group => f.default_group_quota,
            })
            .unwrap_or(0);
        let principal = json!({"id": q.principal_id, "name": q.principal_name});
        let mut v = json!({
            "name": format!("{}/{}", q.fs_name, q.principal_id),
            "file_system": {"id": q.fs_id, "name": q.fs_name, "resource_type": "file-systems"},
            "quota": q.quota,
            "usage": used,
            "file_system_default_quota": default,
        });
        v[match kind {
            QuotaKind::User => "user",
            QuotaKind::Group => "group",
        }] = principal;
        v
    }

    /// Resolves uids/user_names (gids/group_names) to (id, name).
    fn principals(&self, kind: QuotaKind, q: &Query) -> ApiResult<Option<Vec<Principal>>> {
        match (q.list(kind.ids_param()), q.list(kind.names_param())) {
            (Some(_), Some(_)) => Err(ApiError::bad(
                format!(
                    "{} and {} cannot be used together.",
                    kind.ids_param(),
                    kind.names_param()
                ),
                None,
            )),
            (Some(ids), None) => ids
                .iter()
                .map(|i| {
                    let id: u32 = i
                        .parse()
                        .map_err(|_| ApiError::bad(format!("Invalid {}.", kind.ids_param()), Some(i)))?;
                    Ok((id, lookup_passwd(kind.db(), None, Some(id)).map(|(_, n)| n)))
                })
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            (None, Some(names)) => names
                .iter()
                .map(|n| {
                    lookup_passwd(kind.db(), Some(n), None)
                        .map(|(id, name)| (id, Some(name)))
                        .ok_or_else(|| ApiError::bad(format!("{} does not exist.", kind.word()), Some(n)))
                })
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            (None, None) => Ok(None),
        }
    }

    fn quota_file_systems(&self, q: &Query, required: bool) -> ApiResult<Option<Vec<String>>> {
        let sel = match (q.list("file_system_names"), q.list("file_system_ids")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad(
                    "file_system_names and file_system_ids cannot be used together.",
                    None,
                ));
            }
            (Some(n), None) => Some(Selector::Names(n)),
            (None, Some(i)) => Some(Selector::Ids(i)),
            (None, None) if required => {
                return Err(ApiError::bad(
                    "file_system_names or file_system_ids is required.",
                    None,
                ));
            }
            (None, None) => None,
        };
        sel.map(|s| self.select_fs(&s)).transpose()
    }

    pub(crate) fn get_quotas(&self, kind: QuotaKind, q: &Query) -> ApiResult<Value> {
        let fss = self.quota_file_systems(q, false)?;
        let principals = self.principals(kind, q)?;
        let items = self
            .quotas(kind)
            .iter()
            .filter(|x| fss.as_ref().is_none_or(|f| f.contains(&x.fs_name)))
            .filter(|x| {
                principals
                    .as_ref()
                    .is_none_or(|p| p.iter().any(|(id, _)| *id == x.principal_id))
            })
            .filter(|x| {
                q.list("names")
                    .is_none_or(|n| n.contains(&format!("{}/{}", x.fs_name, x.principal_id)))
            })
            .map(|x| self.quota_json(kind, x))
            .collect();
        list_envelope(items, q, |_| json!({}))
    }

    fn quota_value(quota: Option<i64>) -> ApiResult<i64> {
        match quota {
            None => Err(ApiError::bad("quota is required.", None)),
            Some(v) if v > 0 => Ok(v),
            Some(_) => Err(ApiError::bad("quota must be greater than zero.", None)),
        }
    }

    fn post_quotas(&mut self, kind: QuotaKind, q: &Query, quota: Option<i64>) -> ApiResult<Value> {
        let fss = self.quota_file_systems(q, true)?.unwrap_or_default();
        let principals = self.principals(kind, q)?.ok_or_else(|| {
            ApiError::bad(
                format!("{} or {} is required.", kind.ids_param(), kind.names_param()),
                None,
            )
        })?;
        let quota = Self::quota_value(quota)?;
        for fs in &fss {
            if self.st.file_systems[fs].destroyed {
                return Err(ApiError::bad("Cannot modify a destroyed file system.", Some(fs)));
            }
            for (id, _) in &principals {
                if self
                    .quotas(kind)
                    .iter()
                    .any(|x| &x.fs_name == fs && x.principal_id == *id)
                {
                    return Err(ApiError::bad(
                        "Quota already exists.",
                        Some(&format!("{fs}/{id}")),
                    ));
                }
            }
        }
        let mut out = Vec::new();
        for fs in &fss {
            let fs_id = self.st.file_systems[fs].id.clone();
            for (id, name) in &principals {
                let entry = Quota {
                    fs_id: fs_id.clone(),
                    fs_name: fs.clone(),
                    principal_id: *id,
                    principal_name: name.clone(),
                    quota,
                };
                out.push(self.quota_json(kind, &entry));
                self.quotas_mut(kind).push(entry);
            }
        }
        Ok(json!({"items": out}))
    }

    fn quota_indices(&self, kind: QuotaKind, q: &Query) -> ApiResult<Vec<usize>> {
        let fss = self.quota_file_systems(q, true)?.unwrap_or_default();
        let principals = self.principals(kind, q)?.ok_or_else(|| {
            ApiError::bad(
                format!("{} or {} is required.", kind.ids_param(), kind.names_param()),
                None,
            )
        })?;
        let mut idx = Vec::new();
        for fs in &fss {
            for (id, _) in &principals {
                let i = self
                    .quotas(kind)
                    .iter()
                    .position(|x| &x.fs_name == fs && x.principal_id == *id)
                    .ok_or_else(|| ApiError::bad("Quota does not exist.", Some(&format!("{fs}/{id}"))))?;
                idx.push(i);
            }
        }
        Ok(idx)
    }

    fn patch_quotas(&mut self, kind: QuotaKind, q: &Query, quota: Option<i64>) -> ApiResult<Value> {
        let idx = self.quota_indices(kind, q)?;
        let quota = Self::quota_value(quota)?;
        let mut out = Vec::new();
        for i in idx {
            self.quotas_mut(kind)[i].quota = quota;
            let entry = self.quotas(kind)[i].clone();
            out.push(self.quota_json(kind, &entry));
        }
        Ok(json!({"items": out}))
    }

    pub(crate) fn delete_quotas(&mut self, kind: QuotaKind, q: &Query) -> ApiResult<Value> {
        let mut idx = self.quota_indices(kind, q)?;
        idx.sort_unstable();
        idx.dedup();
        for i in idx.into_iter().rev() {
            self.quotas_mut(kind).remove(i);
        }
        Ok(Value::Null)
    }
}
