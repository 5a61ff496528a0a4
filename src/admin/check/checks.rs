//! The checks that need only the REST API, in the order they run. Each
//! records what the driver expects, what the array did, and the code that
//! relies on it. A refusal the check is about is an observation (DIFFERS);
//! a failure that leaves nothing to check with (no login, no file system)
//! ends the run, and the cleanup follows.

use serde_json::{Value, json};

use super::{Run, Verdict, check, mount, skipped};
use crate::flashblade::FileSystemSpec;
use crate::flashblade::assumptions::{RENAME_MINOR, Refusal, absent_id, probe_missing, refusal};
use crate::flashblade::client::Call;
use crate::flashblade::error::{ApiErrorKind, Error};
use crate::flashblade::filter::Filter;
use crate::flashblade::models::{FileSystem, Snapshot};
use crate::flashblade::ops::Created;

/// The throwaway file system's size: the smallest worth asking for.
pub(super) const SIZE: i64 = 1 << 20;

/// Roles whose tokens may create, change, destroy and eradicate.
const ROLES_THAT_CAN: &[&str] = &["array_admin", "storage_admin"];

const CODE_ROLE: &[&str] = &[
    "src/controller/volumes.rs (every change)",
    "src/controller/snapshots.rs",
];
const CODE_CREATE: &[&str] = &[
    "src/flashblade/ops.rs: create_file_system, FileSystemSpec::body",
    "src/controller/volumes.rs: CreateVolume",
];
const CODE_BY_ID: &[&str] = &[
    "src/flashblade/ops.rs: find_file_system_by_id",
    "src/flashblade/filter.rs: Filter::id",
    "src/controller/volumes.rs: DeleteVolume, ControllerExpandVolume",
    "src/admin/mod.rs: Session::resolve",
];
const CODE_KEYSET: &[&str] = &[
    "src/flashblade/ops.rs: collect_page",
    "src/flashblade/filter.rs: Filter::after",
    "src/controller/volumes.rs: ListVolumes",
    "src/controller/snapshots.rs: ListSnapshots",
    "src/controller/usage.rs",
];
const CODE_OWNER_ID: &[&str] = &[
    "src/flashblade/filter.rs: Filter::driver_snapshots_owned_by",
    "src/controller/snapshots.rs: ListSnapshots by source volume",
];
const CODE_NOT_FOUND: &[&str] = &[
    "src/flashblade/error.rs: ApiErrorKind::classify",
    "src/flashblade/ops.rs: destroy_file_system_by_id, eradicate_file_system, delete_snapshot, remove_quota",
];
const CODE_EXISTS: &[&str] = &[
    "src/flashblade/error.rs: ApiErrorKind::classify",
    "src/flashblade/ops.rs: create_resolving, set_quota",
];
const CODE_BUSY: &[&str] = &["src/flashblade/client.rs: ArrayClient::attempt (a 500 saying busy is retried)"];
const CODE_RULES_EMPTY: &[&str] = &[
    "src/controller/volumes.rs: CreateVolume (exportTo: nodes starts with rules \"\")",
    "src/controller/publish.rs",
];
const CODE_RULES_CONCURRENT: &[&str] = &[
    "src/controller/publish.rs: ControllerPublishVolume, ControllerUnpublishVolume (nfs.add_rules, nfs.remove_rules)",
];
const CODE_SPACE: &[&str] = &[
    "src/controller/placement.rs: free_space",
    "src/flashblade/models.rs: Space::used",
    "src/admin/arrays.rs",
];
const CODE_RENAME: &[&str] = &[
    "src/flashblade/ops.rs: rename_file_system",
    "src/controller/volumes.rs: DeleteVolume (tombstone names)",
    "src/admin/recover.rs: recover (renames back)",
];
const CODE_RENAME_DESTROY: &[&str] = &[
    "src/flashblade/ops.rs: destroy_file_system_by_id",
    "src/controller/volumes.rs: DeleteVolume",
];

/// Runs every check; an error ends the run (the caller cleans up).
pub(super) async fn run_all(run: &Run) -> Result<(), Error> {
    let minor = facts(run).await?;
    let fs = create(run).await?;
    by_id(run, &fs).await?;
    keyset(run, &fs).await?;
    not_found(run).await?;
    let snap = snapshot(run, &fs).await?;
    already_exists(run, &fs).await?;
    run.record(skipped(
        "error-busy",
        CODE_BUSY,
        "an overloaded array answers HTTP 500 with \"busy\" in the message (retried)",
        "an array cannot be made busy on purpose",
    ));
    rules_empty(run, &fs).await?;
    rules_concurrent(run, &fs).await?;
    mount::checks(run, &fs, &snap).await?;
    space(run).await?;
    rename(run, &fs, minor).await?;
    rename_and_destroy(run, &fs, minor).await
}

/// Login, the array's identity, the token's user and role.
async fn facts(run: &Run) -> Result<u32, Error> {
    let c = &run.client;
    let info = c.describe().await?;
    let user = c.username().await?;
    {
        let mut f = run.facts.lock().unwrap();
        f.array_name = Some(info.name.clone());
        f.purity = Some(info.version.clone());
        f.rest_version = Some(format!("2.{}", info.rest_minor));
        f.user = user.clone();
    }
    let expected = format!("the token's role is {}", ROLES_THAT_CAN.join(" or "));
    let role = match &user {
        None => Err("login named no user".to_string()),
        Some(u) => {
            let r = c
                .call(Call::get(
                    "admins",
                    vec![("names", u.clone())],
                    format!("read administrator {u}"),
                ))
                .await;
            match r {
                Ok(v) => v
                    .pointer("/items/0/role/name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| "admins answered without a role".to_string()),
                Err(e) => Err(format!("admins: {e}")),
            }
        }
    };
    match role {
        Ok(role) => {
            run.facts.lock().unwrap().role = Some(role.clone());
            let verdict = if ROLES_THAT_CAN.contains(&role.as_str()) {
                Verdict::Pass
            } else {
                Verdict::Differs
            };
            run.record(check(
                "token-role",
                CODE_ROLE,
                expected,
                format!("role {role}"),
                verdict,
            ));
        }
        Err(why) => run.record(skipped(
            "token-role",
            CODE_ROLE,
            expected,
            format!("{why}; the checks below show what the token may do"),
        )),
    }
    Ok(info.rest_minor)
}

/// Creates the throwaway file system the way CreateVolume does.
async fn create(run: &Run) -> Result<FileSystem, Error> {
    let name = &run.names.base;
    let nfs = run.mount.is_nfs();
    let spec = FileSystemSpec {
        provisioned: Some(SIZE),
        hard_limit: true,
        nfs_v3: nfs,
        nfs_v41: nfs,
        rules: Some(String::new()),
        snapshot_directory: true,
        ..Default::default()
    };
    let expected = format!("POST file-systems creates {name}: 1 MiB, hard limit on, nfs.rules \"\"");
    // The random base must be unused, so that whatever carries it later is
    // this run's to remove.
    let taken = run
        .client
        .list_file_systems_sorted(&Filter::name_starts_with(name), None, 1, None, false)
        .await?;
    let snaps = run
        .client
        .list_snapshots(&Filter::name_starts_with(name), 1, None)
        .await?;
    if let Some(n) = taken
        .items
        .first()
        .map(|f| f.name.clone())
        .or_else(|| snaps.items.first().map(|s| s.name.clone()))
    {
        return Err(Error::Protocol {
            array: run.client.name().to_string(),
            detail: format!("{n} already exists (this run's random name is taken); run the check again"),
        });
    }
    *run.claimed.lock().unwrap() = true;
    match run.client.create_file_system(name, &spec).await {
        Ok(Created::New(fs)) => {
            *run.fs_id.lock().unwrap() = Some(fs.id.clone());
            let ok = fs.name == *name && fs.provisioned == Some(SIZE) && fs.hard_limit_enabled;
            let observed = format!(
                "id {}, provisioned {}, hard limit {}",
                fs.id,
                shown(fs.provisioned),
                fs.hard_limit_enabled
            );
            run.record(check(
                "create-file-system",
                CODE_CREATE,
                expected,
                observed,
                verdict(ok),
            ));
            Ok(fs)
        }
        Ok(Created::Found(fs)) => {
            // Made by an earlier attempt of this very create (its answer
            // was lost): the name was unused just before.
            *run.fs_id.lock().unwrap() = Some(fs.id.clone());
            run.record(check(
                "create-file-system",
                CODE_CREATE,
                expected,
                format!("id {}, found after an answer was lost", fs.id),
                Verdict::Pass,
            ));
            Ok(fs)
        }
        Err(e) => {
            run.record(check(
                "create-file-system",
                CODE_CREATE,
                expected,
                e.to_string(),
                Verdict::Differs,
            ));
            Err(e)
        }
    }
}

/// A figure the array may leave out.
fn shown(v: Option<i64>) -> String {
    v.map_or_else(|| "absent".into(), |v| v.to_string())
}

fn verdict(ok: bool) -> Verdict {
    if ok { Verdict::Pass } else { Verdict::Differs }
}

async fn by_id(run: &Run, fs: &FileSystem) -> Result<(), Error> {
    let found = run.client.find_file_system_by_id(&fs.id).await;
    let expected = format!("filter=id='{}' finds {} (and only it)", fs.id, fs.name);
    let (observed, ok) = match found {
        Ok(Some(f)) => (format!("found {}", f.name), f.name == fs.name),
        Ok(None) => ("found nothing".into(), false),
        Err(e) => (e.to_string(), false),
    };
    run.record(check("filter-by-id", CODE_BY_ID, expected, observed, verdict(ok)));
    Ok(())
}

/// `name>'…'` with `sort=name`: the page after a name, and the order.
async fn keyset(run: &Run, fs: &FileSystem) -> Result<(), Error> {
    let c = &run.client;
    let name = &fs.name;
    let before = &name[..name.len() - 1];
    let expected = format!(
        "filter=name='{name}' and name>'{name}' with sort=name finds nothing; with name>'{before}' finds {name}; names come back in byte order"
    );
    let list = |f: Filter| async move {
        c.list_file_systems_sorted(&f, None, 10, None, true)
            .await
            .map(|p| p.items.into_iter().map(|f| f.name).collect::<Vec<_>>())
    };
    let after_self = list(Filter::name(name).after(name)).await;
    let after_before = list(Filter::name(name).after(before)).await;
    let (observed, ok) = match (after_self, after_before) {
        (Ok(a), Ok(b)) => {
            let ok = a.is_empty() && b == [name.clone()];
            (format!("after itself: {a:?}; after {before}: {b:?}"), ok)
        }
        (Err(e), _) | (_, Err(e)) => (format!("refused: {e}"), false),
    };
    // The order, on the driver's own names (the listing the driver makes
    // anyway; only the names are looked at).
    let order = list(Filter::name_prefixes(std::slice::from_ref(&run.names.prefix))).await;
    let (observed, ok) = match order {
        Ok(names) => {
            let sorted = names.windows(2).all(|w| w[0] <= w[1]);
            (
                format!(
                    "{observed}; {} names of the driver's prefix {}",
                    names.len(),
                    if sorted {
                        "in byte order"
                    } else {
                        "NOT in byte order"
                    }
                ),
                ok && sorted,
            )
        }
        Err(e) => (format!("{observed}; sorted listing refused: {e}"), false),
    };
    run.record(check(
        "keyset-paging",
        CODE_KEYSET,
        expected,
        observed,
        verdict(ok),
    ));
    Ok(())
}

fn describe_refusal(r: &Refusal) -> String {
    match r.status {
        Some(s) => format!("HTTP {s} \"{}\"", r.message),
        None => "accepted".into(),
    }
}

async fn not_found(run: &Run) -> Result<(), Error> {
    let fs_missing = format!("{}-absent", run.names.base);
    let a = probe_missing(&run.client, "file-systems", "names", &fs_missing).await?;
    let b = probe_missing(&run.client, "file-systems", "ids", &absent_id()).await?;
    let c = probe_missing(&run.client, "file-system-snapshots", "ids", &absent_id()).await?;
    let ok = [&a, &b, &c]
        .iter()
        .all(|r| r.kind == Some(ApiErrorKind::NotFound));
    run.record(check(
        "error-does-not-exist",
        CODE_NOT_FOUND,
        "a missing file system (names=, ids=) or snapshot (ids=) is refused with \"does not exist\" or \"not found\" in the message",
        format!(
            "file system by name: {}; by id: {}; snapshot by id: {}",
            describe_refusal(&a),
            describe_refusal(&b),
            describe_refusal(&c)
        ),
        verdict(ok),
    ));
    Ok(())
}

async fn already_exists(run: &Run, fs: &FileSystem) -> Result<(), Error> {
    let c = &run.client;
    let post_fs = Call {
        method: reqwest::Method::POST,
        resource: "file-systems",
        query: vec![("names", fs.name.clone())],
        body: Some(
            json!({"provisioned": SIZE, "hard_limit_enabled": true, "nfs": {"v3_enabled": false, "v4_1_enabled": false, "rules": ""}}),
        ),
        idempotent: false,
        what: format!("create file system {} again (expected to be refused)", fs.name),
    };
    let a = refusal(c.call(post_fs).await)?;
    let post_snap = Call {
        method: reqwest::Method::POST,
        resource: "file-system-snapshots",
        query: vec![("source_names", fs.name.clone())],
        body: Some(json!({"suffix": run.names.snapshot_suffix})),
        idempotent: false,
        what: format!(
            "create snapshot {} again (expected to be refused)",
            run.names.snapshot_name(&fs.name)
        ),
    };
    let b = refusal(c.call(post_snap).await)?;
    // A second object of the same name would be a finding in itself; the
    // cleanup removes it with the rest.
    let ok = a.kind == Some(ApiErrorKind::AlreadyExists) && b.kind == Some(ApiErrorKind::AlreadyExists);
    run.record(check(
        "error-already-exists",
        CODE_EXISTS,
        "POST of a file system or snapshot name that is taken is refused with \"already exists\" in the message",
        format!("file system: {}; snapshot: {}", describe_refusal(&a), describe_refusal(&b)),
        verdict(ok),
    ));
    Ok(())
}

async fn rules_empty(run: &Run, fs: &FileSystem) -> Result<(), Error> {
    let back = run.client.find_file_system_by_id(&fs.id).await?;
    let rules = back.as_ref().and_then(|f| f.nfs.rules.clone());
    let observed = match &rules {
        Some(r) => format!("nfs.rules reads back as {r:?}"),
        None => "nfs.rules reads back as null".into(),
    };
    let ok = rules.as_deref() == Some("");
    let extra = if run.mount.is_nfs() {
        " (whether it exports to nobody: rules-empty-mount)"
    } else {
        " (whether it exports to nobody needs --mount)"
    };
    run.record(check(
        "rules-empty",
        CODE_RULES_EMPTY,
        format!("a file system created with nfs.rules \"\" keeps \"\"{extra}"),
        observed,
        verdict(ok),
    ));
    Ok(())
}

/// Documentation addresses (TEST-NET-1, RFC 5737): no host has them.
fn test_rules() -> Vec<String> {
    (1..=4).map(|i| format!("192.0.2.{i}(rw,root_squash)")).collect()
}

fn rule_set(fs: &FileSystem) -> Vec<String> {
    let mut v: Vec<String> = fs
        .nfs
        .rules
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

async fn rules_concurrent(run: &Run, fs: &FileSystem) -> Result<(), Error> {
    let c = &run.client;
    let rules = test_rules();
    let edit = |key: &'static str, rule: String| async move {
        c.patch_file_system(
            &fs.id,
            json!({"nfs": {key: rule}}),
            vec![],
            format!("{key} {rule} on {}", fs.name),
        )
        .await
    };
    let added = tokio::join!(
        edit("add_rules", rules[0].clone()),
        edit("add_rules", rules[1].clone()),
        edit("add_rules", rules[2].clone()),
        edit("add_rules", rules[3].clone()),
    );
    let after_add = c
        .find_file_system_by_id(&fs.id)
        .await?
        .map(|f| rule_set(&f))
        .unwrap_or_default();
    let removed = tokio::join!(
        edit("remove_rules", rules[0].clone()),
        edit("remove_rules", rules[1].clone()),
        edit("remove_rules", rules[2].clone()),
        edit("remove_rules", rules[3].clone()),
    );
    let after_remove = c
        .find_file_system_by_id(&fs.id)
        .await?
        .map(|f| rule_set(&f))
        .unwrap_or_default();
    let errors: Vec<String> = [
        added.0, added.1, added.2, added.3, removed.0, removed.1, removed.2, removed.3,
    ]
    .into_iter()
    .filter_map(Result::err)
    .map(|e| e.to_string())
    .collect();
    // Anything the removals missed must not stay exported.
    if !after_remove.is_empty() {
        c.patch_file_system(
            &fs.id,
            json!({"nfs": {"rules": ""}}),
            vec![],
            format!("clear rules of {}", fs.name),
        )
        .await?;
    }
    let mut want = rules.clone();
    want.sort();
    let ok = errors.is_empty() && after_add == want && after_remove.is_empty();
    let mut observed = format!(
        "after 4 concurrent add_rules: {after_add:?}; after 4 concurrent remove_rules: {after_remove:?}"
    );
    if !errors.is_empty() {
        observed.push_str(&format!("; refused: {}", errors.join("; ")));
    }
    run.record(check(
        "rules-add-remove-concurrent",
        CODE_RULES_CONCURRENT,
        "4 concurrent PATCHes with nfs.add_rules each add their rule; 4 concurrent remove_rules leave \"\" (rules for 192.0.2.1-4, addresses no host has)",
        observed,
        verdict(ok),
    ));
    Ok(())
}

/// Creates the throwaway snapshot and checks the owner.id filter.
async fn snapshot(run: &Run, fs: &FileSystem) -> Result<Snapshot, Error> {
    let c = &run.client;
    let snap = c.create_snapshot(&fs.name, &run.names.snapshot_suffix).await?;
    let filter = Filter::driver_snapshots_owned_by(&fs.id);
    let expected = format!("filter={filter} finds {} and nothing else", snap.name);
    let (observed, ok) = match c.list_snapshots(&filter, 10, None).await {
        Ok(page) => {
            let names: Vec<&str> = page.items.iter().map(|s| s.name.as_str()).collect();
            (format!("found {names:?}"), names == [snap.name.as_str()])
        }
        Err(e) => (format!("refused: {e}"), false),
    };
    run.record(check(
        "snapshot-owner-id-filter",
        CODE_OWNER_ID,
        expected,
        observed,
        verdict(ok),
    ));
    Ok(snap)
}

async fn space(run: &Run) -> Result<(), Error> {
    let sp = run.client.array_space().await?;
    let s = &sp.space;
    let used = s.used();
    let observed = format!(
        "capacity {}, total_used {}, total_physical {}, virtual {}: placement would weigh {} free",
        sp.capacity,
        shown(s.total_used),
        shown(s.total_physical),
        shown(s.virtual_bytes),
        (sp.capacity - used).max(0)
    );
    let ok = s.total_used.is_some() && sp.capacity > 0 && (0..=sp.capacity).contains(&used);
    run.record(check(
        "free-space-field",
        CODE_SPACE,
        "arrays/space?type=file-system has capacity and space.total_used (2.16+); placement weighs capacity - total_used",
        observed,
        verdict(ok),
    ));
    Ok(())
}

async fn rename(run: &Run, fs: &FileSystem, minor: u32) -> Result<(), Error> {
    let expected = "PATCH name renames a file system (REST 2.16+), and renames it back";
    if minor < RENAME_MINOR {
        run.record(skipped(
            "rename",
            CODE_RENAME,
            expected,
            format!("REST 2.{minor} has no rename; the driver deletes without tombstone names (it logs this at start)"),
        ));
        return Ok(());
    }
    let c = &run.client;
    let new_name = format!("{}-r", fs.name);
    let (observed, ok) = match c.rename_file_system(fs, &new_name).await {
        Ok(renamed) => {
            let now = c.find_file_system_by_id(&fs.id).await?;
            let now_name = now.map(|f| f.name).unwrap_or_else(|| "(gone)".into());
            let back = c.rename_file_system(&renamed, &fs.name).await;
            let back_text = match &back {
                Ok(f) => format!("renamed back to {}", f.name),
                Err(e) => format!("renaming back refused: {e}"),
            };
            (
                format!("answer names {}; by id: {now_name}; {back_text}", renamed.name),
                renamed.name == new_name && now_name == new_name && back.is_ok_and(|f| f.name == fs.name),
            )
        }
        Err(e) => (format!("refused: {e}"), false),
    };
    run.record(check("rename", CODE_RENAME, expected, observed, verdict(ok)));
    Ok(())
}

/// Last: one PATCH that renames to a tombstone-like name and destroys, as
/// DeleteVolume sends it. The cleanup eradicates what it leaves.
async fn rename_and_destroy(run: &Run, fs: &FileSystem, minor: u32) -> Result<(), Error> {
    let expected = "one PATCH may set name and destroyed together (REST 2.16+)";
    if minor < RENAME_MINOR {
        run.record(skipped(
            "rename-and-destroy",
            CODE_RENAME_DESTROY,
            expected,
            format!("REST 2.{minor} has no rename"),
        ));
        return Ok(());
    }
    // A mounted file system may refuse to be destroyed: unmount first.
    let left = mount::unmount_all(run).await;
    if !left.is_empty() {
        run.record(skipped(
            "rename-and-destroy",
            CODE_RENAME_DESTROY,
            expected,
            left.join("; "),
        ));
        return Ok(());
    }
    let tomb = format!("{}-t", fs.name);
    let r = run
        .client
        .destroy_file_system_by_id(&fs.id, &fs.name, Some(&tomb))
        .await;
    let (observed, ok) = match r {
        Ok(Some(f)) => (
            format!("name {}, destroyed {}", f.name, f.destroyed),
            f.name == tomb && f.destroyed,
        ),
        Ok(None) => ("the file system was gone".into(), false),
        Err(e) => (format!("refused: {e}"), false),
    };
    run.record(check(
        "rename-and-destroy",
        CODE_RENAME_DESTROY,
        expected,
        observed,
        verdict(ok),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rules_are_documentation_addresses() {
        for r in test_rules() {
            assert!(r.starts_with("192.0.2."), "{r}");
        }
    }

    #[test]
    fn rule_sets_ignore_order_and_spacing() {
        let mut fs = FileSystem::default();
        fs.nfs.rules = Some(" b(rw)  a(ro) ".into());
        assert_eq!(rule_set(&fs), ["a(ro)", "b(rw)"]);
        fs.nfs.rules = None;
        assert!(rule_set(&fs).is_empty());
    }
}
