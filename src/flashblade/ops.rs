//! Typed FlashBlade operations on top of [`ArrayClient::call`]. Changes to
//! existing objects address them by their immutable id. A create whose outcome
//! is unknown is resolved by reading the object by name before any retry, so a
//! retry never makes a second object.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::client::{ArrayClient, Call};
use super::error::{Error, Transport};
use super::filter::Filter;
use super::models::{ArraySpace, ExportPolicy, FileSystem, Page, QuotaEntry, Snapshot};

/// How many times a create is sent when each attempt's outcome was unknown
/// and reading back showed nothing.
const CREATE_ATTEMPTS: u32 = 3;

/// What to create.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FileSystemSpec {
    pub provisioned: Option<i64>,
    pub hard_limit: bool,
    pub nfs_v3: bool,
    pub nfs_v41: bool,
    /// Exactly one of `rules` and `export_policy` (or neither: no export).
    pub rules: Option<String>,
    pub export_policy: Option<String>,
    pub snapshot_directory: bool,
    pub default_user_quota: Option<i64>,
    pub default_group_quota: Option<i64>,
    /// Copy the content of this snapshot (by name).
    pub source_snapshot: Option<String>,
}

impl FileSystemSpec {
    fn body(&self) -> Value {
        let mut nfs = json!({"v3_enabled": self.nfs_v3, "v4_1_enabled": self.nfs_v41});
        if let Some(r) = &self.rules {
            nfs["rules"] = json!(r);
        }
        if let Some(p) = &self.export_policy {
            nfs["export_policy"] = json!({"name": p});
        }
        let mut body = json!({
            "hard_limit_enabled": self.hard_limit,
            "snapshot_directory_enabled": self.snapshot_directory,
            "nfs": nfs,
            "smb": {"enabled": false},
            "http": {"enabled": false},
        });
        if let Some(p) = self.provisioned {
            body["provisioned"] = json!(p);
        }
        if let Some(q) = self.default_user_quota {
            body["default_user_quota"] = json!(q);
        }
        if let Some(q) = self.default_group_quota {
            body["default_group_quota"] = json!(q);
        }
        if let Some(s) = &self.source_snapshot {
            body["source"] = json!({"name": s});
        }
        body
    }
}

fn parse<T: DeserializeOwned>(array: &str, what: &str, v: Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::Protocol {
        array: array.to_string(),
        detail: format!("{what}: {e}"),
    })
}

fn first<T: DeserializeOwned>(array: &str, what: &str, v: Value) -> Result<T, Error> {
    let mut page: Page<T> = parse(array, what, v)?;
    if page.items.is_empty() {
        return Err(Error::Protocol {
            array: array.to_string(),
            detail: format!("{what}: the answer has no items"),
        });
    }
    Ok(page.items.swap_remove(0))
}

/// FlashBlade filter string literal (names are validated before they get
/// here; quotes are escaped anyway).
/// Facts about an array for the log.
#[derive(Debug, Clone)]
pub(crate) struct ArrayInfo {
    pub name: String,
    pub version: String,
    pub rest_minor: u32,
    /// `eradication_config.manual_eradication` (2.15+): `disabled` means
    /// eradication requests are refused.
    pub manual_eradication: Option<String>,
}

/// Whose quota: a user's (uid) or a group's (gid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuotaKind {
    User,
    Group,
}

impl QuotaKind {
    fn resource(self) -> &'static str {
        match self {
            QuotaKind::User => "quotas/users",
            QuotaKind::Group => "quotas/groups",
        }
    }
    fn ids(self) -> &'static str {
        match self {
            QuotaKind::User => "uids",
            QuotaKind::Group => "gids",
        }
    }
    pub(crate) fn word(self) -> &'static str {
        match self {
            QuotaKind::User => "user",
            QuotaKind::Group => "group",
        }
    }
}

/// What a create found: a new object, or one that already had the name.
#[derive(Debug)]
pub(crate) enum Created<T> {
    New(T),
    Found(T),
}

impl<T> Created<T> {
    pub(crate) fn into_inner(self) -> T {
        match self {
            Created::New(t) | Created::Found(t) => t,
        }
    }
}

impl ArrayClient {
    /// The file system with this name, live or destroyed, if any. Uses a
    /// filter so a missing name is an empty answer, not an error.
    pub(crate) async fn find_file_system(&self, name: &str) -> Result<Option<FileSystem>, Error> {
        let v = self
            .call(Call::get(
                "file-systems",
                vec![("filter", Filter::name(name).to_string())],
                format!("look up file system {name}"),
            ))
            .await?;
        let page: Page<FileSystem> = parse(self.name(), "file-systems", v)?;
        Ok(page.items.into_iter().find(|f| f.name == name))
    }

    /// The file system with the array's id `id`, whatever its name now.
    pub(crate) async fn find_file_system_by_id(&self, id: &str) -> Result<Option<FileSystem>, Error> {
        let v = self
            .call(Call::get(
                "file-systems",
                vec![("filter", Filter::id(id).to_string())],
                format!("look up file system id {id}"),
            ))
            .await?;
        let page: Page<FileSystem> = parse(self.name(), "file-systems", v)?;
        Ok(page.items.into_iter().find(|f| f.id == id))
    }

    /// Renames a file system (REST 2.16+).
    pub(crate) async fn rename_file_system(
        &self,
        fs: &FileSystem,
        new_name: &str,
    ) -> Result<FileSystem, Error> {
        self.patch_file_system(
            &fs.id,
            json!({"name": new_name}),
            vec![],
            format!("rename file system {} to {new_name}", fs.name),
        )
        .await
    }

    /// One page of file systems matching `filter`, optionally sorted by name
    /// on the array (then the array sends no continuation token: page by
    /// `name>'last'` in the filter instead).
    pub(crate) async fn list_file_systems_sorted(
        &self,
        filter: &Filter,
        destroyed: Option<bool>,
        limit: u32,
        token: Option<&str>,
        by_name: bool,
    ) -> Result<Page<FileSystem>, Error> {
        let mut q = vec![("filter", filter.to_string()), ("limit", limit.to_string())];
        if by_name {
            q.push(("sort", "name".to_string()));
        }
        if let Some(d) = destroyed {
            q.push(("destroyed", d.to_string()));
        }
        if let Some(t) = token {
            q.push(("continuation_token", t.to_string()));
        }
        let v = self
            .call(Call::get("file-systems", q, "list file systems"))
            .await?;
        parse(self.name(), "file-systems", v)
    }

    /// Sends a create first (one request for a name the array has not seen,
    /// the common case); only when the array says the name exists, or an
    /// attempt's outcome is unknown, reads the object back by name: if it
    /// exists, that is the result ([`Created::Found`], for the caller to
    /// judge: it may be an earlier attempt's, another controller's, or not
    /// ours at all); if not, sends it again. Never a second object for one
    /// name.
    async fn create_resolving<T, R, F>(
        &self,
        what: &str,
        call: impl Fn() -> Call,
        read_back: R,
    ) -> Result<Created<T>, Error>
    where
        T: DeserializeOwned,
        R: Fn() -> F,
        F: std::future::Future<Output = Result<Option<T>, Error>>,
    {
        for attempt in 1..=CREATE_ATTEMPTS {
            match self.call(call()).await {
                Ok(v) => return first(self.name(), what, v).map(Created::New),
                Err(e) if e.is_already_exists() => {
                    return match read_back().await? {
                        Some(found) => Ok(Created::Found(found)),
                        // Gone again between the two calls (eradicated):
                        // nothing to judge; let the caller retry.
                        None => Err(e),
                    };
                }
                Err(Error::Ambiguous { reason, .. }) => {
                    tracing::warn!(array = %self.name(), %what, %reason, attempt, "outcome unknown; reading it back");
                    if let Some(found) = read_back().await? {
                        return Ok(Created::Found(found));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Unavailable {
            array: self.name().to_string(),
            attempts: CREATE_ATTEMPTS,
            last: Transport::NothingCreated {
                what: what.to_string(),
            },
        })
    }

    /// Creates a file system (see [`ArrayClient::create_resolving`]).
    pub(crate) async fn create_file_system(
        &self,
        name: &str,
        spec: &FileSystemSpec,
    ) -> Result<Created<FileSystem>, Error> {
        let call = || Call {
            method: Method::POST,
            resource: "file-systems",
            query: vec![("names", name.to_string())],
            body: Some(spec.body()),
            idempotent: false,
            what: format!("create file system {name}"),
        };
        self.create_resolving(&format!("create file system {name}"), call, || {
            self.find_file_system(name)
        })
        .await
    }

    /// Restores a file system in place from one of its snapshots
    /// (`overwrite` + `discard_non_snapshotted_data`). Repeating it gives the
    /// same result, so it is retried like an idempotent call.
    pub(crate) async fn restore_file_system(&self, name: &str, snapshot: &str) -> Result<FileSystem, Error> {
        let call = Call {
            method: Method::POST,
            resource: "file-systems",
            query: vec![
                ("names", name.to_string()),
                ("overwrite", "true".into()),
                ("discard_non_snapshotted_data", "true".into()),
            ],
            body: Some(json!({"source": {"name": snapshot}})),
            idempotent: true,
            what: format!("restore file system {name} from {snapshot}"),
        };
        first(self.name(), "restore file system", self.call(call).await?)
    }

    /// Changes a file system, addressed by id.
    pub(crate) async fn patch_file_system(
        &self,
        id: &str,
        body: Value,
        extra: Vec<(&'static str, String)>,
        what: String,
    ) -> Result<FileSystem, Error> {
        let mut query = vec![("ids", id.to_string())];
        query.extend(extra);
        let call = Call {
            method: Method::PATCH,
            resource: "file-systems",
            query,
            body: Some(body),
            idempotent: true,
            what,
        };
        first(self.name(), "patch file system", self.call(call).await?)
    }

    /// Sets a file system's size (its hard quota when the limit is on).
    pub(crate) async fn resize_file_system(&self, fs: &FileSystem, bytes: i64) -> Result<FileSystem, Error> {
        self.patch_file_system(
            &fs.id,
            json!({"provisioned": bytes}),
            vec![],
            format!("resize file system {} to {bytes} bytes", fs.name),
        )
        .await
    }

    /// Soft delete: destroyed (recoverable until eradication) with every
    /// protocol switched off, in one request as FlashBlade tooling does.
    pub(crate) async fn destroy_file_system(&self, fs: &FileSystem) -> Result<FileSystem, Error> {
        self.patch_file_system(
            &fs.id,
            json!({
                "destroyed": true,
                "nfs": {"v3_enabled": false, "v4_1_enabled": false},
                "smb": {"enabled": false},
                "http": {"enabled": false},
            }),
            vec![],
            format!("destroy file system {}", fs.name),
        )
        .await
    }

    /// Soft delete addressed by the array's id alone, in one request: every
    /// protocol off, destroyed, and, when `new_name` is given (REST 2.16+),
    /// renamed in the same PATCH. `Ok(None)`: no file system has this id.
    /// Any other refusal (e.g. it is already destroyed: the array refuses
    /// a rename of a destroyed file system) comes back as the array's error.
    pub async fn destroy_file_system_by_id(
        &self,
        id: &str,
        label: &str,
        new_name: Option<&str>,
    ) -> Result<Option<FileSystem>, Error> {
        let mut body = json!({
            "destroyed": true,
            "nfs": {"v3_enabled": false, "v4_1_enabled": false},
            "smb": {"enabled": false},
            "http": {"enabled": false},
        });
        if let Some(n) = new_name {
            body["name"] = json!(n);
        }
        let what = match new_name {
            Some(n) => format!("destroy file system {label} (id {id}) as {n}"),
            None => format!("destroy file system {label} (id {id})"),
        };
        match self.patch_file_system(id, body, vec![], what).await {
            Ok(fs) => Ok(Some(fs)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Eradicates a destroyed file system. Already gone is success.
    pub(crate) async fn eradicate_file_system(&self, fs: &FileSystem) -> Result<(), Error> {
        let call = Call {
            method: Method::DELETE,
            resource: "file-systems",
            query: vec![("ids", fs.id.clone())],
            body: None,
            idempotent: true,
            what: format!("eradicate file system {}", fs.name),
        };
        match self.call(call).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Who the array is: its name, Purity version and the negotiated REST
    /// version (logs in if needed).
    pub(crate) async fn describe(&self) -> Result<ArrayInfo, Error> {
        let rest_minor = self.api_minor().await?;
        let v = self.call(Call::get("arrays", vec![], "describe array")).await?;
        let item: Value = first(self.name(), "arrays", v)?;
        let text = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
        Ok(ArrayInfo {
            name: text("name"),
            version: format!("{} {}", text("os"), text("version")),
            rest_minor,
            manual_eradication: item
                .pointer("/eradication_config/manual_eradication")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    pub(crate) async fn array_space(&self) -> Result<ArraySpace, Error> {
        let v = self
            .call(Call::get(
                "arrays/space",
                vec![("type", "file-system".into())],
                "read array space",
            ))
            .await?;
        first(self.name(), "arrays/space", v)
    }

    pub(crate) async fn find_export_policy(&self, name: &str) -> Result<Option<ExportPolicy>, Error> {
        let v = self
            .call(Call::get(
                "nfs-export-policies",
                vec![("filter", Filter::name(name).to_string())],
                format!("look up export policy {name}"),
            ))
            .await?;
        let page: Page<ExportPolicy> = parse(self.name(), "nfs-export-policies", v)?;
        Ok(page.items.into_iter().find(|p| p.name == name))
    }

    /// The explicit user or group quotas of a file system, with usage.
    pub(crate) async fn quotas(&self, kind: QuotaKind, fs_name: &str) -> Result<Vec<QuotaEntry>, Error> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![
                ("file_system_names", fs_name.to_string()),
                ("limit", "1000".into()),
            ];
            if let Some(t) = &token {
                q.push(("continuation_token", t.clone()));
            }
            let v = self
                .call(Call::get(
                    kind.resource(),
                    q,
                    format!("list {} quotas of {fs_name}", kind.word()),
                ))
                .await?;
            let page: Page<QuotaEntry> = parse(self.name(), kind.resource(), v)?;
            all.extend(page.items);
            match page.continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// Sets the quota of uid/gid `id` on a file system: creates it, or
    /// changes it when it exists (so a repeat is harmless).
    pub(crate) async fn set_quota(
        &self,
        kind: QuotaKind,
        fs_name: &str,
        id: u32,
        bytes: i64,
    ) -> Result<QuotaEntry, Error> {
        let query = vec![
            ("file_system_names", fs_name.to_string()),
            (kind.ids(), id.to_string()),
        ];
        let call = |method: Method, verb: &str| Call {
            method,
            resource: kind.resource(),
            query: query.clone(),
            body: Some(json!({"quota": bytes})),
            // A repeated POST answers "already exists", handled below.
            idempotent: true,
            what: format!("{verb} {} quota {id} on {fs_name}", kind.word()),
        };
        match self.call(call(Method::POST, "set")).await {
            Ok(v) => first(self.name(), kind.resource(), v),
            Err(e) if e.is_already_exists() => {
                let v = self.call(call(Method::PATCH, "change")).await?;
                first(self.name(), kind.resource(), v)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes the quota of uid/gid `id`; `false` when there was none.
    pub(crate) async fn remove_quota(&self, kind: QuotaKind, fs_name: &str, id: u32) -> Result<bool, Error> {
        let call = Call {
            method: Method::DELETE,
            resource: kind.resource(),
            query: vec![
                ("file_system_names", fs_name.to_string()),
                (kind.ids(), id.to_string()),
            ],
            body: None,
            idempotent: true,
            what: format!("remove {} quota {id} on {fs_name}", kind.word()),
        };
        match self.call(call).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Recovers a destroyed file system (destroyed=false); its protocols
    /// stay off until [`ArrayClient::patch_file_system`] turns them on.
    pub(crate) async fn recover_file_system(&self, fs: &FileSystem) -> Result<FileSystem, Error> {
        self.patch_file_system(
            &fs.id,
            json!({"destroyed": false}),
            vec![],
            format!("recover file system {}", fs.name),
        )
        .await
    }

    /// One page of snapshots matching `filter`.
    pub(crate) async fn list_snapshots(
        &self,
        filter: &Filter,
        limit: u32,
        token: Option<&str>,
    ) -> Result<Page<Snapshot>, Error> {
        self.list_snapshots_sorted(filter, limit, token, false).await
    }

    /// Like [`ArrayClient::list_snapshots`], optionally sorted by name on
    /// the array.
    pub(crate) async fn list_snapshots_sorted(
        &self,
        filter: &Filter,
        limit: u32,
        token: Option<&str>,
        by_name: bool,
    ) -> Result<Page<Snapshot>, Error> {
        let mut q = vec![("filter", filter.to_string()), ("limit", limit.to_string())];
        if by_name {
            q.push(("sort", "name".to_string()));
        }
        if let Some(t) = token {
            q.push(("continuation_token", t.to_string()));
        }
        let v = self
            .call(Call::get("file-system-snapshots", q, "list snapshots"))
            .await?;
        parse(self.name(), "file-system-snapshots", v)
    }

    /// The snapshot with this full name (`fs.suffix`), if any.
    pub(crate) async fn find_snapshot(&self, name: &str) -> Result<Option<Snapshot>, Error> {
        let page = self.list_snapshots(&Filter::name(name), 10, None).await?;
        Ok(page.items.into_iter().find(|s| s.name == name))
    }

    /// The snapshot with the array's id `id`, if any.
    pub(crate) async fn find_snapshot_by_id(&self, id: &str) -> Result<Option<Snapshot>, Error> {
        let page = self.list_snapshots(&Filter::id(id), 1, None).await?;
        Ok(page.items.into_iter().find(|s| s.id == id))
    }

    /// Snapshots `fs_name` with `suffix` (see [`ArrayClient::create_resolving`]).
    pub(crate) async fn create_snapshot(&self, fs_name: &str, suffix: &str) -> Result<Snapshot, Error> {
        let full = format!("{fs_name}.{suffix}");
        let call = || Call {
            method: Method::POST,
            resource: "file-system-snapshots",
            query: vec![("source_names", fs_name.to_string())],
            body: Some(json!({"suffix": suffix})),
            idempotent: false,
            what: format!("create snapshot {full}"),
        };
        self.create_resolving(&format!("create snapshot {full}"), call, || {
            self.find_snapshot(&full)
        })
        .await
        .map(Created::into_inner)
    }

    /// Destroys (if needed) and eradicates a snapshot. Already gone is success.
    pub(crate) async fn delete_snapshot(&self, snap: &Snapshot, eradicate: bool) -> Result<(), Error> {
        if !snap.destroyed {
            let call = Call {
                method: Method::PATCH,
                resource: "file-system-snapshots",
                query: vec![("ids", snap.id.clone())],
                body: Some(json!({"destroyed": true})),
                idempotent: true,
                what: format!("destroy snapshot {}", snap.name),
            };
            match self.call(call).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        if eradicate {
            let call = Call {
                method: Method::DELETE,
                resource: "file-system-snapshots",
                query: vec![("ids", snap.id.clone())],
                body: None,
                idempotent: true,
                what: format!("eradicate snapshot {}", snap.name),
            };
            match self.call(call).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// What one list page needs from one array, in name order: with no `need`,
/// everything matching `filter` after `after` (following the array's
/// continuation tokens); otherwise keyset paging sorted on the array: only
/// names after `after`, and at most one more than `need` (which says whether
/// more remain), so a page costs what it returns instead of a re-listing.
pub(crate) async fn collect_page<T, F, Fut>(
    filter: &Filter,
    after: &str,
    need: Option<usize>,
    name: impl Fn(&T) -> &str,
    fetch: F,
) -> Result<Vec<T>, Error>
where
    F: Fn(Filter, u32, Option<String>, bool) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, Error>>,
{
    let mut all = Vec::new();
    match need {
        None => {
            let f = filter.after(after);
            let mut token: Option<String> = None;
            loop {
                let page = fetch(f.clone(), 1000, token.clone(), false).await?;
                all.extend(page.items);
                match page.continuation_token {
                    Some(t) if !t.is_empty() => token = Some(t),
                    _ => break,
                }
            }
        }
        Some(need) => {
            let mut last = after.to_string();
            loop {
                let limit = (need + 1 - all.len()).min(1000);
                let page = fetch(filter.after(&last), limit as u32, None, true).await?;
                let n = page.items.len();
                all.extend(page.items);
                if n < limit || all.len() > need {
                    break;
                }
                last = all.last().map(|t| name(t).to_string()).unwrap_or_default();
            }
        }
    }
    all.sort_by(|a, b| name(a).cmp(name(b)));
    Ok(all)
}
