//! Removes what the check made, whatever happened before: unmounts, then
//! destroys and eradicates every snapshot and file system whose name starts
//! with the run's random base (and nothing else), then lists again to prove
//! nothing is left. A create cut off by Ctrl-C may still land on the array
//! after the first pass; the second pass, a moment later, catches it.

use std::time::Duration;

use super::{CleanupReport, Run, mount};
use crate::flashblade::filter::Filter;

/// How many passes (each: list, remove) before giving up.
const PASSES: usize = 3;

pub(super) async fn cleanup(run: &Run) -> CleanupReport {
    let mut report = CleanupReport::default();
    for left in mount::unmount_all(run).await {
        report.left_behind.push(left);
    }
    if !*run.claimed.lock().unwrap() {
        // Nothing was created: nothing here is this run's to remove.
        return report;
    }
    let mut last_problems = Vec::new();
    for pass in 0..PASSES {
        if pass > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (found, problems) = remove_pass(run, &mut report.removed).await;
        last_problems = problems;
        if found == 0 && pass > 0 {
            break;
        }
    }
    report.left_behind.extend(last_problems);
    // Its id is the one name nothing can change: a last look by it.
    let id = run.fs_id.lock().unwrap().clone();
    if let Some(id) = id
        && let Ok(Some(fs)) = run.client.find_file_system_by_id(&id).await
        && report.left_behind.is_empty()
    {
        report
            .left_behind
            .push(format!("file system {} (id {id}): still on the array", fs.name));
    }
    report.removed.sort();
    report.removed.dedup();
    report
}

/// One pass: returns how many objects it found and what it could not
/// remove.
async fn remove_pass(run: &Run, removed: &mut Vec<String>) -> (usize, Vec<String>) {
    let c = &run.client;
    let base = &run.names.base;
    let filter = Filter::name_starts_with(base);
    let mut problems = Vec::new();
    let mut found = 0;
    match c.list_snapshots(&filter, 100, None).await {
        Ok(page) => {
            for s in page.items.iter().filter(|s| run.names.owns(&s.name)) {
                found += 1;
                match c.delete_snapshot(s, true).await {
                    Ok(()) => removed.push(format!("snapshot {}", s.name)),
                    Err(e) => problems.push(format!("snapshot {}: {e}", s.name)),
                }
            }
        }
        Err(e) => problems.push(format!(
            "snapshots named {base}*: cannot list them ({e}); look for them by hand"
        )),
    }
    match c.list_file_systems_sorted(&filter, None, 100, None, false).await {
        Ok(page) => {
            for fs in page.items.iter().filter(|f| run.names.owns(&f.name)) {
                found += 1;
                if !fs.destroyed
                    && let Err(e) = c.destroy_file_system(fs).await
                {
                    problems.push(format!("file system {}: cannot destroy it: {e}", fs.name));
                    continue;
                }
                match c.eradicate_file_system(fs).await {
                    Ok(()) => removed.push(format!("file system {}", fs.name)),
                    Err(e) => problems.push(format!(
                        "file system {}: destroyed, but not eradicated ({e}); the array eradicates it when its eradication delay ends",
                        fs.name
                    )),
                }
            }
        }
        Err(e) => problems.push(format!(
            "file systems named {base}*: cannot list them ({e}); look for them by hand"
        )),
    }
    (found, problems)
}
