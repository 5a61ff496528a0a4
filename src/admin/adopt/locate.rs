//! Finding the file system on a configured array that an old PV names.

use super::*;

/// The file-system names a CSI PV may name: its handle, the handle's last
/// `/`- or `:`-separated part, and volume attributes whose key speaks of a
/// name, share or path (a leading `/` removed). Only valid FlashBlade names.
pub(super) fn csi_names(csi: &CSIPersistentVolumeSource) -> Vec<FsName> {
    let mut raw = vec![csi.volume_handle.clone()];
    if let Some(last) = csi.volume_handle.rsplit(['/', ':']).next() {
        raw.push(last.to_string());
    }
    for (k, v) in csi.volume_attributes.iter().flatten() {
        let key = k.to_ascii_lowercase();
        if key.starts_with("csi.storage.k8s.io/") || key.starts_with("storage.kubernetes.io/") {
            continue;
        }
        if ["name", "share", "path"].iter().any(|w| key.contains(w)) {
            raw.push(v.trim_start_matches('/').to_string());
        }
    }
    let mut out: Vec<FsName> = Vec::new();
    for r in raw {
        if let Ok(n) = r.parse::<FsName>()
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

/// The NFS server a CSI PV's attributes name, if any (to tell arrays apart).
pub(super) fn csi_server_hint(csi: &CSIPersistentVolumeSource) -> Option<String> {
    csi.volume_attributes.iter().flatten().find_map(|(k, v)| {
        let key = k.to_ascii_lowercase();
        (key.contains("server") || key.contains("endpoint")).then(|| v.clone())
    })
}

/// Why a PV is not a candidate: the reason the report gives for skipping it.
#[derive(Debug, thiserror::Error)]
pub(super) enum NotCandidate {
    #[error("volume handle {0:?} names no FlashBlade file system (a FlashArray volume?)")]
    NoFileSystemName(String),
    #[error("file system {name} exists on arrays {arrays}; nothing in the PV tells which one it is")]
    OnSeveralArrays { name: String, arrays: String },
    #[error(
        "no file system named {names} on array {arrays} (a FlashArray volume, or an array not configured here?)"
    )]
    Missing { names: String, arrays: String },
    #[error("file system {0} is destroyed (soft-deleted): recover it first (`flashblade-csi recover`)")]
    Destroyed(String),
    #[error("in-tree NFS from {0}, which is no configured array's NFS endpoint")]
    UnknownServer(String),
    #[error("path {0:?} is not /<file system>")]
    NotFileSystemPath(String),
    #[error(
        "path {path} is a directory inside file system {top}: this driver mounts whole file systems, so this PV stays as it is"
    )]
    Subdirectory { path: String, top: String },
    #[error("path {0} names no FlashBlade file system")]
    NotAName(String),
    #[error("no file system {name} on array {array}")]
    NotOnArray { name: FsName, array: ArrayName },
    #[error(
        "file system {name} on array {array} is destroyed (soft-deleted): recover it first (`flashblade-csi recover`)"
    )]
    DestroyedOn { name: FsName, array: ArrayName },
    #[error("{name} cannot carry a volume id: {source}")]
    NoVolumeId {
        name: String,
        #[source]
        source: crate::volume::NameError,
    },
}

fn same_host(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The live file system a PV of the other driver is, on which array: by
/// name on every configured array (an array's id is read, nothing changes).
pub(super) async fn locate_csi(
    s: &Session,
    csi: &CSIPersistentVolumeSource,
) -> Result<Result<(ArrayName, FileSystem), NotCandidate>, AdminError> {
    let names = csi_names(csi);
    if names.is_empty() {
        return Ok(Err(NotCandidate::NoFileSystemName(crate::text::clip(
            &csi.volume_handle,
        ))));
    }
    let hint = csi_server_hint(csi);
    let mut destroyed = Vec::new();
    for name in &names {
        let mut hits = Vec::new();
        for (array, client) in &s.arrays {
            match client.find_file_system(name).await? {
                Some(fs) if fs.destroyed => destroyed.push(format!("{array}/{}", fs.name)),
                Some(fs) => hits.push((array.clone(), fs)),
                None => {}
            }
        }
        if hits.len() > 1
            && let Some(server) = &hint
        {
            hits.retain(|(a, _)| {
                s.config
                    .array(a)
                    .and_then(|c| c.nfs_endpoint.as_ref())
                    .is_some_and(|e| same_host(e, server))
            });
        }
        match hits.len() {
            0 => {}
            1 => return Ok(Ok(hits.remove(0))),
            _ => {
                return Ok(Err(NotCandidate::OnSeveralArrays {
                    name: name.to_string(),
                    arrays: hits
                        .iter()
                        .map(|(a, _)| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }));
            }
        }
    }
    let arrays: Vec<&str> = s.arrays.keys().map(|a| a.as_str()).collect();
    let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    Ok(Err(if destroyed.is_empty() {
        NotCandidate::Missing {
            names: names.join(" or "),
            arrays: arrays.join(", "),
        }
    } else {
        NotCandidate::Destroyed(destroyed.join(", "))
    }))
}

/// The live file system an in-tree NFS PV mounts: its server must be a
/// configured array's NFS endpoint and its path `/<file system>`.
pub(super) async fn locate_nfs(
    s: &Session,
    nfs: &NFSVolumeSource,
) -> Result<Result<(ArrayName, FileSystem), NotCandidate>, AdminError> {
    let Some(array) = s
        .config
        .arrays
        .iter()
        .find(|a| a.nfs_endpoint.as_ref().is_some_and(|e| same_host(e, &nfs.server)))
    else {
        return Ok(Err(NotCandidate::UnknownServer(crate::text::clip(&nfs.server))));
    };
    let path = nfs.path.trim_end_matches('/');
    let Some(rest) = path.strip_prefix('/').filter(|r| !r.is_empty()) else {
        return Ok(Err(NotCandidate::NotFileSystemPath(crate::text::clip(&nfs.path))));
    };
    if let Some((top, _)) = rest.split_once('/') {
        return Ok(Err(NotCandidate::Subdirectory {
            path: crate::text::clip(&nfs.path),
            top: crate::text::clip(top),
        }));
    }
    let Ok(name) = rest.parse::<FsName>() else {
        return Ok(Err(NotCandidate::NotAName(crate::text::clip(&nfs.path))));
    };
    Ok(match s.client(&array.name)?.find_file_system(&name).await? {
        None => Err(NotCandidate::NotOnArray {
            name,
            array: array.name.clone(),
        }),
        Some(fs) if fs.destroyed => Err(NotCandidate::DestroyedOn {
            name,
            array: array.name.clone(),
        }),
        Some(fs) => Ok((array.name.clone(), fs)),
    })
}

pub(super) fn candidate(
    s: &Session,
    pv: &PersistentVolume,
    name: &str,
    kind: Kind,
    array: ArrayName,
    fs: FileSystem,
) -> Result<Candidate, NotCandidate> {
    let no_id = |source| NotCandidate::NoVolumeId {
        name: fs.name.clone(),
        source,
    };
    let handle = match kind {
        // The array's id makes it the driver's own: resize, snapshots,
        // quotas and ModifyVolume work as for a volume it created.
        Kind::Csi => VolumeId::managed(&array, &fs.name, &fs.id, DeletePolicy::Destroy).map_err(no_id)?,
        Kind::Nfs => VolumeId::Static {
            array: Some(array.clone()),
            fs_name: fs.name.parse().map_err(no_id)?,
            version: None,
        },
    };
    let server = match (kind, pv.spec.as_ref().and_then(|s| s.nfs.as_ref())) {
        // Exactly what the pods mounted until now.
        (Kind::Nfs, Some(nfs)) => nfs.server.clone(),
        _ => s
            .config
            .array(&array)
            .and_then(|a| a.nfs_endpoint.as_ref())
            .map(|h| h.to_string())
            .unwrap_or_default(),
    };
    Ok(Candidate {
        old: pv.clone(),
        name: name.to_string(),
        kind,
        new_name: new_pv_name(name),
        array,
        fs,
        handle,
        server,
    })
}
