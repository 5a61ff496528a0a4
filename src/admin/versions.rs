//! `flashblade-csi versions`: the versions of a dataset (the live snapshots
//! of its file system) and, for one of them, a static PersistentVolume and
//! PersistentVolumeClaim to `kubectl apply`, so that "mount cifar10 as of
//! v3" is one command. Uses the same configuration as `serve`; reads the
//! array, changes nothing.

use std::time::{Duration, UNIX_EPOCH};

use crate::app::{AppError, array_clients};
use crate::config::{Config, Settings};
use crate::flashblade::filter::Filter;
use crate::flashblade::models::{FileSystem, Snapshot};
use crate::flashblade::{ArrayClient, Error as ArrayError};
use crate::volume::{FsName, SnapshotSuffix, VolumeId};

#[derive(clap::Args)]
pub struct VersionsArgs {
    /// The dataset's file system on the array.
    #[arg(long)]
    pub dataset: FsName,
    /// Print a static PV and PVC for this version (a snapshot suffix);
    /// without it, list the versions.
    #[arg(long)]
    pub version: Option<SnapshotSuffix>,
    /// The namespace of the PVC (the dataset PVC's namespace).
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The PVC's name (default `<dataset>-<version>`); the PV is named
    /// `<namespace>-<pvc>`.
    #[arg(long)]
    pub claim_name: Option<String>,
    /// The capacity written in the PV and PVC (a Kubernetes quantity);
    /// default: the file system's size, or its data rounded up to GiB.
    #[arg(long)]
    pub size: Option<String>,
    #[command(flatten)]
    pub serve: Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum VersionsError {
    #[error(transparent)]
    Setup(#[from] AppError),
    #[error(transparent)]
    Array(#[from] ArrayError),
    #[error("{0}")]
    Refused(String),
}

/// Runs the command; returns the exit status.
pub fn main(args: VersionsArgs) -> i32 {
    let config = match Config::load_for_admin(&args.serve) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flashblade-csi: {e}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flashblade-csi: cannot start runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(&config, &args)) {
        Ok(out) => {
            print!("{out}");
            0
        }
        Err(e) => {
            eprintln!("flashblade-csi: versions: {e}");
            1
        }
    }
}

/// The command's output: the version list, or the PV and PVC.
pub async fn run(config: &Config, args: &VersionsArgs) -> Result<String, VersionsError> {
    let arrays = array_clients(config, &std::sync::Arc::new(crate::metrics::Metrics::new()))?;
    let array = config
        .default_array()
        .ok_or_else(|| VersionsError::Refused("no array is configured".into()))?;
    let client = arrays
        .get(&array.name)
        .ok_or_else(|| VersionsError::Refused(format!("array {} is not configured", array.name)))?;
    let result = inspect(client, &args.dataset).await;
    for c in arrays.values() {
        c.logout().await;
    }
    let (fs, versions) = result?;
    let enabled = fs.snapshot_directory_enabled != Some(false);
    let Some(wanted) = &args.version else {
        return Ok(listing(array.name.as_ref(), &fs, enabled, &versions));
    };
    if !enabled {
        return Err(VersionsError::Refused(format!(
            "file system {} has its snapshot directory disabled (snapshot_directory_enabled is false); nodes cannot mount its versions until it is enabled",
            fs.name
        )));
    }
    if !versions.iter().any(|(s, _)| s == wanted) {
        let names: Vec<&str> = versions.iter().map(|(s, _)| s.as_str()).collect();
        return Err(VersionsError::Refused(format!(
            "{} has no version {wanted}; its versions are: {}",
            fs.name,
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            }
        )));
    }
    let handle = VolumeId::Static {
        array: Some(array.name.clone()),
        fs_name: args.dataset.clone(),
        version: Some(wanted.clone()),
    };
    let claim = args.claim_name.clone().unwrap_or_else(|| {
        format!("{}-{wanted}", args.dataset)
            .to_lowercase()
            .replace('_', "-")
    });
    let size = args.size.clone().unwrap_or_else(|| default_size(&fs));
    Ok(manifests(&ManifestInput {
        driver: &config.driver_name,
        handle: &handle.to_string(),
        version: wanted.as_str(),
        namespace: &args.namespace,
        claim: &claim,
        size: &size,
    }))
}

/// The file system and its live snapshots as versions, oldest first.
async fn inspect(
    client: &ArrayClient,
    dataset: &FsName,
) -> Result<(FileSystem, Vec<(SnapshotSuffix, Snapshot)>), VersionsError> {
    let fs = client
        .find_file_system(dataset)
        .await?
        .filter(|f| !f.destroyed)
        .ok_or_else(|| VersionsError::Refused(format!("file system {dataset} does not exist")))?;
    let mut versions = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_snapshots(&Filter::live_snapshots_of(&fs.name), 500, token.as_deref())
            .await?;
        for s in page.items {
            let suffix = s
                .suffix
                .clone()
                .or_else(|| s.name.split_once('.').map(|(_, x)| x.to_string()));
            if let Some(v) = suffix.and_then(|x| x.parse::<SnapshotSuffix>().ok()) {
                versions.push((v, s));
            }
        }
        match page.continuation_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    versions.sort_by(|a, b| (a.1.created, &a.0).cmp(&(b.1.created, &b.0)));
    Ok((fs, versions))
}

fn listing(array: &str, fs: &FileSystem, enabled: bool, versions: &[(SnapshotSuffix, Snapshot)]) -> String {
    let mut out = format!(
        "versions of {} on {array} (snapshot directory {}):\n",
        fs.name,
        if enabled {
            "enabled"
        } else {
            "DISABLED: nodes cannot mount versions"
        }
    );
    if versions.is_empty() {
        out.push_str("  (none: take a snapshot of the file system on the array)\n");
        return out;
    }
    out.push_str(&format!(
        "  {:<24} {:<22} {}\n",
        "VERSION", "CREATED (UTC)", "SNAPSHOT"
    ));
    for (v, s) in versions {
        let created = humantime::format_rfc3339_seconds(
            UNIX_EPOCH + Duration::from_millis(u64::try_from(s.created).unwrap_or(0)),
        );
        out.push_str(&format!(
            "  {:<24} {:<22} {}\n",
            v.as_str(),
            created.to_string(),
            s.name
        ));
    }
    out.push_str("print a PV and PVC for one with --version <VERSION> [--namespace NS]\n");
    out
}

/// The PV's capacity: the file system's size if it has one, else its data
/// rounded up to whole GiB (at least 1Gi). Kubernetes only matches PVC to PV
/// by it; the mount is the snapshot, whatever the number.
fn default_size(fs: &FileSystem) -> String {
    const GIB: i64 = 1 << 30;
    let bytes = match fs.provisioned {
        Some(p) if p > 0 => p,
        _ => fs.space.virtual_bytes.unwrap_or(0),
    };
    if bytes > 0 && bytes % GIB != 0 && fs.provisioned.is_some_and(|p| p > 0) {
        return bytes.to_string();
    }
    format!("{}Gi", ((bytes + GIB - 1) / GIB).max(1))
}

struct ManifestInput<'a> {
    driver: &'a str,
    handle: &'a str,
    version: &'a str,
    namespace: &'a str,
    claim: &'a str,
    size: &'a str,
}

/// A static, read-only, Retain PV bound to exactly one PVC, and that PVC.
fn manifests(m: &ManifestInput<'_>) -> String {
    let pv = format!("{}-{}", m.namespace, m.claim);
    format!(
        "\
# Version {version} of a dataset, read-only: kubectl apply -f this file.
apiVersion: v1
kind: PersistentVolume
metadata:
  name: {pv}
spec:
  capacity:
    storage: {size}
  accessModes: [ReadOnlyMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: \"\"
  claimRef:
    namespace: {namespace}
    name: {claim}
  csi:
    driver: {driver}
    volumeHandle: {handle}
    readOnly: true
    volumeAttributes:
      snapshot: {version}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {claim}
  namespace: {namespace}
spec:
  accessModes: [ReadOnlyMany]
  storageClassName: \"\"
  volumeName: {pv}
  resources:
    requests:
      storage: {size}
",
        version = m.version,
        size = m.size,
        namespace = m.namespace,
        claim = m.claim,
        driver = m.driver,
        handle = m.handle,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_name_the_version_in_handle_and_attribute() {
        let out = manifests(&ManifestInput {
            driver: "flashblade.csi.dev",
            handle: "fb01/cifar10.v3",
            version: "v3",
            namespace: "hub",
            claim: "cifar10-v3",
            size: "10Gi",
        });
        for want in [
            "name: hub-cifar10-v3",
            "volumeHandle: fb01/cifar10.v3",
            "snapshot: v3",
            "persistentVolumeReclaimPolicy: Retain",
            "readOnly: true",
            "namespace: hub",
            "volumeName: hub-cifar10-v3",
            "storage: 10Gi",
        ] {
            assert!(out.contains(want), "{want}\n{out}");
        }
        assert_eq!(out.matches("accessModes: [ReadOnlyMany]").count(), 2);
    }
}
