//! `nfs-export-policies` and `nfs-export-policies/rules` (REST 2.3+), and the
//! NFS export rule strings file systems carry.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Array, Store, new_id, read, resolve, valid_name, write};
use crate::api::{ApiError, ApiResult, Body, Query, Reply, Selector, Since, clearable, list_envelope};

/// Export policies arrived in REST 2.3.
type Policies = Since<3>;

pub(super) fn routes<S: Store>() -> Router<Arc<S>> {
    Router::new()
        .route(
            "/api/{version}/nfs-export-policies",
            get(list_policies::<S>)
                .post(create_policies::<S>)
                .patch(update_policies::<S>)
                .delete(delete_policies::<S>),
        )
        .route(
            "/api/{version}/nfs-export-policies/rules",
            get(list_rules::<S>)
                .post(create_rules::<S>)
                .patch(update_rules::<S>)
                .delete(delete_rules::<S>),
        )
}

async fn list_policies<S: Store>(State(s): State<Arc<S>>, _: Policies, q: Query) -> ApiResult<Reply> {
    read(s, move |a| a.get_policies(&q)).await
}

async fn create_policies<S: Store>(
    State(s): State<Arc<S>>,
    _: Policies,
    q: Query,
    Body(b): Body<PolicyBody>,
) -> ApiResult<Reply> {
    write(s, move |a| a.post_policies(&q, &b)).await
}

async fn update_policies<S: Store>(
    State(s): State<Arc<S>>,
    _: Policies,
    q: Query,
    Body(b): Body<PolicyBody>,
) -> ApiResult<Reply> {
    write(s, move |a| a.patch_policies(&q, &b)).await
}

async fn delete_policies<S: Store>(State(s): State<Arc<S>>, _: Policies, q: Query) -> ApiResult<Reply> {
    write(s, move |a| a.delete_policies(&q)).await
}

async fn list_rules<S: Store>(State(s): State<Arc<S>>, _: Policies, q: Query) -> ApiResult<Reply> {
    read(s, move |a| a.get_rules(&q)).await
}

async fn create_rules<S: Store>(
    State(s): State<Arc<S>>,
    _: Policies,
    q: Query,
    Body(b): Body<RuleBody>,
) -> ApiResult<Reply> {
    write(s, move |a| a.post_rules(&q, &b)).await
}

async fn update_rules<S: Store>(
    State(s): State<Arc<S>>,
    _: Policies,
    q: Query,
    Body(b): Body<RuleBody>,
) -> ApiResult<Reply> {
    write(s, move |a| a.patch_rules(&q, &b)).await
}

async fn delete_rules<S: Store>(State(s): State<Arc<S>>, _: Policies, q: Query) -> ApiResult<Reply> {
    write(s, move |a| a.delete_rules(&q)).await
}

/// The policy POST and PATCH body; `rules` replaces every rule.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PolicyBody {
    name: Option<String>,
    enabled: Option<bool>,
    rules: Option<Vec<RuleBody>>,
}

/// A rule's POST and PATCH body (and each rule in a policy body). Absent
/// and null fields keep the value, except `anonuid` / `anongid`, where null
/// or "" clears it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuleBody {
    client: Option<String>,
    permission: Option<String>,
    access: Option<String>,
    #[serde(deserialize_with = "clearable")]
    anonuid: Option<Option<i64>>,
    #[serde(deserialize_with = "clearable")]
    anongid: Option<Option<i64>>,
    security: Option<Vec<String>>,
    secure: Option<bool>,
    atime: Option<bool>,
    fileid_32bit: Option<bool>,
    required_transport_security: Option<String>,
}

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

/// Why an `nfs.rules` string is refused; `entry` is the rule at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum RulesError {
    #[error("rule {entry:?} has no (options)")]
    NoOptions { entry: String },
    #[error("rule {entry:?} is missing ')'")]
    Unclosed { entry: String },
    #[error("rule {entry:?} has an invalid client")]
    Client { entry: String },
    #[error("rule {entry:?} has an unknown option {option:?}")]
    Option { entry: String, option: String },
}

/// Checks an `nfs.rules` string: space-separated `client(options)` entries.
pub(crate) fn validate_rules(rules: &str) -> Result<(), RulesError> {
    for entry in rules.split_whitespace() {
        let (client, opts) = entry
            .split_once('(')
            .ok_or_else(|| RulesError::NoOptions { entry: entry.into() })?;
        let opts = opts
            .strip_suffix(')')
            .ok_or_else(|| RulesError::Unclosed { entry: entry.into() })?;
        if client.is_empty()
            || !client
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".-*/:@_".contains(&c))
        {
            return Err(RulesError::Client { entry: entry.into() });
        }
        for opt in opts.split(',').filter(|o| !o.is_empty()) {
            let ok = RULE_OPTIONS.contains(&opt)
                || opt
                    .strip_prefix("anonuid=")
                    .or_else(|| opt.strip_prefix("anongid="))
                    .is_some_and(|n| n.parse::<u32>().is_ok())
                || opt.strip_prefix("sec=").is_some_and(|s| {
                    s.split(':')
                        .all(|x| matches!(x, "sys" | "krb5" | "krb5i" | "krb5p"))
                });
            if !ok {
                return Err(RulesError::Option {
                    entry: entry.into(),
                    option: opt.into(),
                });
            }
        }
    }
    Ok(())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub client: String,
    pub permission: String,
    pub access: String,
    pub anonuid: Option<i64>,
    pub anongid: Option<i64>,
    pub security: Vec<String>,
    pub secure: bool,
    pub atime: bool,
    pub fileid_32bit: bool,
    pub required_transport_security: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub version: String,
    pub rules: Vec<Rule>,
}

impl Array {
    fn bump_version(&mut self, policy: &str) {
        self.st.counter += 1;
        let v = format!("{:016x}", self.st.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if let Some(p) = self.st.policies.get_mut(policy) {
            p.version = v;
        }
    }

    fn rule_json(&self, p: &Policy, i: usize, r: &Rule) -> Value {
        json!({
            "id": r.id,
            "name": format!("{}.{}", p.name, i + 1),
            "index": i + 1,
            "client": r.client,
            "permission": r.permission,
            "access": r.access,
            "anonuid": r.anonuid,
            "anongid": r.anongid,
            "security": r.security,
            "secure": r.secure,
            "atime": r.atime,
            "fileid_32bit": r.fileid_32bit,
            "required_transport_security": r.required_transport_security,
            "policy": {"id": p.id, "name": p.name, "resource_type": "nfs-export-policies"},
            "policy_version": p.version,
        })
    }

    fn policy_json(&self, p: &Policy) -> Value {
        json!({
            "id": p.id,
            "name": p.name,
            "enabled": p.enabled,
            "is_local": true,
            "location": {"id": self.st.array_id, "name": self.st.array_name, "resource_type": "arrays"},
            "policy_type": "nfs",
            "version": p.version,
            "rules": p.rules.iter().enumerate().map(|(i, r)| self.rule_json(p, i, r)).collect::<Vec<_>>(),
        })
    }

    fn rule_from(body: &RuleBody, base: Option<&Rule>) -> ApiResult<Rule> {
        let mut r = base.cloned().unwrap_or(Rule {
            id: new_id(),
            client: "*".into(),
            permission: "ro".into(),
            access: "root-squash".into(),
            anonuid: None,
            anongid: None,
            security: vec!["sys".into()],
            secure: false,
            atime: true,
            fileid_32bit: false,
            required_transport_security: "none".into(),
        });
        if let Some(c) = body.client.as_deref() {
            validate_rules(&format!("{c}(rw)")).map_err(|_| ApiError::bad("Invalid client.", Some(c)))?;
            r.client = c.to_string();
        }
        if let Some(p) = body.permission.as_deref() {
            if !matches!(p, "rw" | "ro") {
                return Err(ApiError::bad("permission must be rw or ro.", Some(p)));
            }
            r.permission = p.to_string();
        }
        if let Some(a) = body.access.as_deref() {
            if !matches!(a, "root-squash" | "all-squash" | "no-squash") {
                return Err(ApiError::bad(
                    "access must be root-squash, all-squash or no-squash.",
                    Some(a),
                ));
            }
            r.access = a.to_string();
        }
        for (key, given, slot) in [
            ("anonuid", body.anonuid, &mut r.anonuid),
            ("anongid", body.anongid, &mut r.anongid),
        ] {
            match given {
                None => {}
                Some(Some(v)) if !(0..=u32::MAX as i64).contains(&v) => {
                    return Err(ApiError::bad(format!("Invalid {key}."), None));
                }
                Some(v) => *slot = v,
            }
        }
        if let Some(sec) = &body.security {
            if sec.is_empty()
                || !sec
                    .iter()
                    .all(|x| matches!(x.as_str(), "sys" | "krb5" | "krb5i" | "krb5p"))
            {
                return Err(ApiError::bad("Invalid security.", None));
            }
            r.security = sec.clone();
        }
        for (given, slot) in [
            (body.secure, &mut r.secure),
            (body.atime, &mut r.atime),
            (body.fileid_32bit, &mut r.fileid_32bit),
        ] {
            if let Some(b) = given {
                *slot = b;
            }
        }
        if let Some(t) = body.required_transport_security.as_deref() {
            if !matches!(t, "none" | "tls" | "mutual-tls") {
                return Err(ApiError::bad("Invalid required_transport_security.", Some(t)));
            }
            r.required_transport_security = t.to_string();
        }
        Ok(r)
    }

    /// The evaluation group of a client (see [`crate::mountd::client_group`]).
    fn client_group(client: &str) -> u8 {
        crate::mountd::client_group(client)
    }

    fn select_policies(&self, q: &Query, names_key: &str, ids_key: &str) -> ApiResult<Option<Vec<String>>> {
        let sel = match (q.list(names_key), q.list(ids_key)) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad(
                    format!("{names_key} and {ids_key} cannot be used together."),
                    None,
                ));
            }
            (Some(n), None) => Selector::Names(n),
            (None, Some(i)) => Selector::Ids(i),
            (None, None) => return Ok(None),
        };
        resolve(
            &self.st.policies,
            &sel,
            |p| &p.id,
            "Export policy does not exist.",
        )
        .map(Some)
    }

    fn check_versions(&self, q: &Query, names: &[String]) -> ApiResult<()> {
        if let Some(versions) = q.list("versions") {
            if versions.len() != names.len() {
                return Err(ApiError::bad("versions must list one version per policy.", None));
            }
            for (n, v) in names.iter().zip(versions) {
                if self.st.policies[n].version != v {
                    return Err(ApiError::new(
                        412,
                        "The policy has been changed; reload it and try again.",
                        Some(n),
                    ));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn get_policies(&self, q: &Query) -> ApiResult<Value> {
        let names = self.select_policies(q, "names", "ids")?;
        let items = self
            .st
            .policies
            .values()
            .filter(|p| names.as_ref().is_none_or(|n| n.contains(&p.name)))
            .map(|p| self.policy_json(p))
            .collect();
        list_envelope(items, q, |_| json!({}))
    }

    fn post_policies(&mut self, q: &Query, body: &PolicyBody) -> ApiResult<Value> {
        let names = q
            .list("names")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad("names is required.", None))?;
        let mut rules = Vec::new();
        if let Some(list) = &body.rules {
            for r in list {
                rules.push(Self::rule_from(r, None)?);
            }
        }
        rules.sort_by_key(|r| Self::client_group(&r.client));
        for n in &names {
            if !valid_name(n) {
                return Err(ApiError::bad("Invalid policy name.", Some(n)));
            }
            if self.st.policies.contains_key(n) {
                return Err(ApiError::bad("Export policy already exists.", Some(n)));
            }
        }
        let mut out = Vec::new();
        for n in names {
            let p = Policy {
                id: new_id(),
                name: n.clone(),
                enabled: body.enabled.unwrap_or(true),
                version: String::new(),
                rules: rules
                    .iter()
                    .map(|r| Rule {
                        id: new_id(),
                        ..r.clone()
                    })
                    .collect(),
            };
            self.st.policies.insert(n.clone(), p);
            self.bump_version(&n);
            out.push(self.policy_json(&self.st.policies[&n]));
        }
        Ok(json!({"items": out}))
    }

    fn patch_policies(&mut self, q: &Query, body: &PolicyBody) -> ApiResult<Value> {
        let names = self
            .select_policies(q, "names", "ids")?
            .ok_or_else(|| ApiError::bad("names or ids is required.", None))?;
        self.check_versions(q, &names)?;
        let enabled = body.enabled;
        let new_rules = match &body.rules {
            Some(list) => {
                let mut v = list
                    .iter()
                    .map(|r| Self::rule_from(r, None))
                    .collect::<ApiResult<Vec<_>>>()?;
                v.sort_by_key(|r| Self::client_group(&r.client));
                Some(v)
            }
            None => None,
        };
        let rename = body.name.clone();
        if let Some(r) = &rename
            && (names.len() != 1 || !valid_name(r) || (self.st.policies.contains_key(r) && r != &names[0]))
        {
            return Err(ApiError::bad("Invalid or duplicate policy name.", Some(r)));
        }
        let mut out = Vec::new();
        for n in names {
            {
                let p = self.st.policies.get_mut(&n).unwrap();
                if let Some(e) = enabled {
                    p.enabled = e;
                }
                if let Some(r) = &new_rules {
                    p.rules = r.clone();
                }
            }
            let mut key = n.clone();
            if let Some(r) = &rename
                && r != &n
            {
                let mut p = self.st.policies.remove(&n).unwrap();
                p.name = r.clone();
                self.st.policies.insert(r.clone(), p);
                for fs in self.st.file_systems.values_mut() {
                    if fs.nfs.export_policy.as_deref() == Some(n.as_str()) {
                        fs.nfs.export_policy = Some(r.clone());
                    }
                }
                key = r.clone();
            }
            self.bump_version(&key);
            out.push(self.policy_json(&self.st.policies[&key]));
        }
        Ok(json!({"items": out}))
    }

    pub(crate) fn delete_policies(&mut self, q: &Query) -> ApiResult<Value> {
        let names = self
            .select_policies(q, "names", "ids")?
            .ok_or_else(|| ApiError::bad("names or ids is required.", None))?;
        self.check_versions(q, &names)?;
        for n in &names {
            if let Some(fs) = self
                .st
                .file_systems
                .values()
                .find(|f| f.nfs.export_policy.as_deref() == Some(n.as_str()))
            {
                return Err(ApiError::bad(
                    format!("Export policy is in use by file system {}.", fs.name),
                    Some(n),
                ));
            }
        }
        for n in names {
            self.st.policies.remove(&n);
        }
        Ok(Value::Null)
    }

    /// Finds rules by `names` (`policy.index`) or `ids`: (policy, index).
    fn select_rules(&self, q: &Query) -> ApiResult<Option<Vec<(String, usize)>>> {
        let find_name = |n: &str| -> ApiResult<(String, usize)> {
            let (pname, idx) = n
                .rsplit_once('.')
                .ok_or_else(|| ApiError::bad("Rule does not exist.", Some(n)))?;
            let i: usize = idx
                .parse()
                .map_err(|_| ApiError::bad("Rule does not exist.", Some(n)))?;
            match self.st.policies.get(pname) {
                Some(p) if i >= 1 && i <= p.rules.len() => Ok((pname.to_string(), i - 1)),
                _ => Err(ApiError::bad("Rule does not exist.", Some(n))),
            }
        };
        let find_id = |id: &str| -> ApiResult<(String, usize)> {
            for p in self.st.policies.values() {
                if let Some(i) = p.rules.iter().position(|r| r.id == id) {
                    return Ok((p.name.clone(), i));
                }
            }
            Err(ApiError::bad("Rule does not exist.", Some(id)))
        };
        match q.names_or_ids()? {
            Some(Selector::Names(n)) => n
                .iter()
                .map(|x| find_name(x))
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            Some(Selector::Ids(i)) => i
                .iter()
                .map(|x| find_id(x))
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn get_rules(&self, q: &Query) -> ApiResult<Value> {
        let policies = self.select_policies(q, "policy_names", "policy_ids")?;
        let chosen = self.select_rules(q)?;
        let mut items = Vec::new();
        for p in self.st.policies.values() {
            if policies.as_ref().is_some_and(|n| !n.contains(&p.name)) {
                continue;
            }
            for (i, r) in p.rules.iter().enumerate() {
                if chosen.as_ref().is_some_and(|c| !c.contains(&(p.name.clone(), i))) {
                    continue;
                }
                items.push(self.rule_json(p, i, r));
            }
        }
        list_envelope(items, q, |_| json!({}))
    }

    fn post_rules(&mut self, q: &Query, body: &RuleBody) -> ApiResult<Value> {
        let names = self
            .select_policies(q, "policy_names", "policy_ids")?
            .ok_or_else(|| ApiError::bad("policy_names or policy_ids is required.", None))?;
        self.check_versions(q, &names)?;
        let rule = Self::rule_from(body, None)?;
        let group = Self::client_group(&rule.client);
        let mut out = Vec::new();
        for n in names {
            let before = match (q.get("before_rule_name"), q.get("before_rule_id")) {
                (Some(b), _) => Some(
                    b.rsplit_once('.')
                        .filter(|(p, _)| *p == n)
                        .and_then(|(_, i)| i.parse::<usize>().ok())
                        .filter(|i| *i >= 1 && *i <= self.st.policies[&n].rules.len())
                        .map(|i| i - 1)
                        .ok_or_else(|| ApiError::bad("Rule does not exist.", Some(b)))?,
                ),
                (None, Some(id)) => Some(
                    self.st.policies[&n]
                        .rules
                        .iter()
                        .position(|r| r.id == id)
                        .ok_or_else(|| ApiError::bad("Rule does not exist.", Some(id)))?,
                ),
                (None, None) => None,
            };
            let p = self.st.policies.get_mut(&n).unwrap();
            let group_end = p
                .rules
                .iter()
                .rposition(|r| Self::client_group(&r.client) <= group)
                .map_or(0, |i| i + 1);
            let at = match before {
                Some(b) if Self::client_group(&p.rules[b].client) == group => b,
                Some(_) => {
                    return Err(ApiError::bad(
                        "A rule can only be placed within its own client group.",
                        None,
                    ));
                }
                None => group_end,
            };
            let new_rule = Rule {
                id: new_id(),
                ..rule.clone()
            };
            p.rules.insert(at, new_rule);
            self.bump_version(&n);
            let p = &self.st.policies[&n];
            out.push(self.rule_json(p, at, &p.rules[at]));
        }
        Ok(json!({"items": out}))
    }

    fn patch_rules(&mut self, q: &Query, body: &RuleBody) -> ApiResult<Value> {
        let chosen = self
            .select_rules(q)?
            .ok_or_else(|| ApiError::bad("names or ids is required.", None))?;
        let mut out = Vec::new();
        for (pname, i) in chosen {
            let r = Self::rule_from(body, Some(&self.st.policies[&pname].rules[i]))?;
            let id = r.id.clone();
            let p = self.st.policies.get_mut(&pname).unwrap();
            p.rules[i] = r;
            // A changed client may move the rule to another evaluation group.
            p.rules.sort_by_key(|x| Self::client_group(&x.client));
            self.bump_version(&pname);
            let p = &self.st.policies[&pname];
            let idx = p.rules.iter().position(|x| x.id == id).expect("rule kept");
            out.push(self.rule_json(p, idx, &p.rules[idx]));
        }
        Ok(json!({"items": out}))
    }

    pub(crate) fn delete_rules(&mut self, q: &Query) -> ApiResult<Value> {
        let mut chosen = self
            .select_rules(q)?
            .ok_or_else(|| ApiError::bad("names or ids is required.", None))?;
        chosen.sort();
        chosen.dedup();
        for (pname, i) in chosen.into_iter().rev() {
            self.st.policies.get_mut(&pname).unwrap().rules.remove(i);
            self.bump_version(&pname);
        }
        Ok(Value::Null)
    }
}

impl Rule {
    /// This rule as the mount daemon applies it.
    pub(crate) fn export_rule(&self) -> crate::mountd::ExportRule {
        crate::mountd::from_policy_rule(crate::mountd::PolicyRule {
            client: &self.client,
            permission: &self.permission,
            access: &self.access,
            anonuid: self.anonuid,
            anongid: self.anongid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_strings() {
        validate_rules("*(rw,no_root_squash)").unwrap();
        validate_rules("10.0.0.0/8(rw,root_squash,anonuid=65534) @ng(ro) *.dom.com(ro,sec=krb5:krb5p)")
            .unwrap();
        validate_rules("").unwrap();
        assert!(validate_rules("10.0.0.0/8").is_err());
        assert!(validate_rules("*(rw,bogus)").is_err());
        assert!(validate_rules("*(rw").is_err());
        assert!(validate_rules("a;b(rw)").is_err());
    }
}
