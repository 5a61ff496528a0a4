//! The demo's steps on the node: the pods' mounts, the snapshot and the
//! restore, the quota step, a home given back after recovery.

use super::*;

/// The steps that mount (root only): alice's pod, the read-only datasets,
/// the hard quota, a snapshot and a restore, the usage figures, logging out.
pub(super) async fn node_steps(
    out: &mut Transcript,
    ctl: &mut ControllerClient<Channel>,
    node: &mut NodeClient<Channel>,
    env: &StoryEnv<'_>,
    alice: &csi::Volume,
) -> Step {
    let (kubelet, admin_config) = (env.kubelet, env.admin_config);
    use csi::volume_capability::access_mode::Mode;
    let staging = kubelet.join("plugins/kubernetes.io/csi/flashblade.csi.dev/alice/globalmount");
    let home = kubelet.join("pods/jupyter-alice/volumes/kubernetes.io~csi/home/mount");
    let ds_staging = kubelet.join("plugins/kubernetes.io/csi/flashblade.csi.dev/datasets/globalmount");
    let ds_target = kubelet.join("pods/jupyter-alice/volumes/kubernetes.io~csi/datasets/mount");
    mount_for_pod(
        node,
        &alice.volume_id,
        alice.volume_context.clone(),
        &staging,
        &home,
        Mode::SingleNodeWriter,
        "alice's home",
    )
    .await?;
    std::fs::write(home.join("analysis.ipynb"), "{\"cells\": [\"first draft\"]}")
        .map_err(failed("writing analysis.ipynb"))?;
    out.say("alice's notebook pod: her home mounted read-write (/home/jovyan); analysis.ipynb saved");
    if env.no_limits.is_none() {
        quota_step(out, ctl, node, kubelet).await?;
    }

    // The datasets, read-only, even though the pod asks for read-write.
    let ds_vol = "fb01/datasets";
    mount_for_pod(
        node,
        ds_vol,
        Default::default(),
        &ds_staging,
        &ds_target,
        Mode::MultiNodeReaderOnly,
        "datasets",
    )
    .await?;
    let rows = std::fs::read_to_string(ds_target.join("iris.csv"))
        .map_err(failed("reading datasets/iris.csv"))?
        .lines()
        .count();
    match std::fs::write(ds_target.join("oops.csv"), "x") {
        Err(err) if err.raw_os_error() == Some(nix::errno::Errno::EROFS as i32) => out.say(format!(
            "alice reads datasets/iris.csv ({rows} lines); writing there fails: {err}"
        )),
        other => {
            return Err(
                format!("a write to the read-only datasets did not fail with EROFS: {other:?}").into(),
            );
        }
    }

    // Version v1 of the datasets next to the live data, as a second volume
    // (a static PV with `snapshot: v1`, as `flashblade-csi versions` prints).
    let v1_vol = "fb01/datasets.v1";
    let v1_staging = kubelet.join("plugins/kubernetes.io/csi/flashblade.csi.dev/datasets-v1/globalmount");
    let v1_target = kubelet.join("pods/jupyter-alice/volumes/kubernetes.io~csi/datasets-v1/mount");
    let v1_ctx: std::collections::HashMap<String, String> =
        [("snapshot".to_string(), "v1".to_string())].into();
    mount_for_pod(
        node,
        v1_vol,
        v1_ctx.clone(),
        &v1_staging,
        &v1_target,
        Mode::MultiNodeReaderOnly,
        "datasets v1",
    )
    .await?;
    let v1_rows = std::fs::read_to_string(v1_target.join("iris.csv"))
        .map_err(failed("reading iris.csv of datasets v1"))?
        .lines()
        .count();
    if v1_rows >= rows {
        return Err(format!(
            "version v1 of the datasets shows {v1_rows} lines, the live one {rows}: not the snapshot"
        )
        .into());
    }
    let v1_write = std::fs::write(v1_target.join("oops.csv"), "x");
    if !matches!(&v1_write, Err(err) if err.raw_os_error() == Some(nix::errno::Errno::EROFS as i32)) {
        return Err(format!("a write to datasets v1 did not fail with EROFS: {v1_write:?}").into());
    }
    out.say(format!(
        "alice also mounts version v1 of the datasets next to the live data: iris.csv has {v1_rows} lines there, \
         {rows} in the live dataset; v1 is read-only too"
    ));

    // Snapshot, an accident, and getting the notebook back.
    let snap = ctl
        .create_snapshot(csi::CreateSnapshotRequest {
            name: "snapshot-alice-before-deadline".into(),
            source_volume_id: alice.volume_id.clone(),
            ..Default::default()
        })
        .await
        .map_err(rpc("CreateSnapshot"))?
        .into_inner()
        .snapshot
        .unwrap_or_default();
    std::fs::write(home.join("analysis.ipynb"), "{\"cells\": []}")
        .map_err(failed("emptying analysis.ipynb"))?;
    out.say("a snapshot of alice's home is taken; then she empties her notebook by mistake");
    // Self-service: the snapshot as a directory under ~/.snapshot.
    match find_in_snapshot_dir(&home, "analysis.ipynb") {
        Some(copy) => {
            std::fs::copy(&copy, home.join("analysis.ipynb"))
                .map_err(failed("copying the notebook back from ~/.snapshot"))?;
            let rel = copy.strip_prefix(&home).unwrap_or(&copy).display().to_string();
            out.say(format!("alice copies her notebook back herself: cp ~/{rel} ~/"));
        }
        None => return Err("the snapshot is not visible under ~/.snapshot".into()),
    }
    std::fs::write(home.join("analysis.ipynb"), "{\"cells\": []}")
        .map_err(failed("emptying analysis.ipynb"))?;
    // Her server is running in this story: the admin says --yes.
    crate::admin::run(
        admin_config.clone(),
        crate::admin::Output::Table,
        crate::admin::Job::Restore {
            volume: alice.volume_id.clone(),
            snapshot_id: snap.snapshot_id.clone(),
            dry_run: false,
            yes: true,
        },
    )
    .await
    .map_err(failed("flashblade-csi restore"))?;
    let back =
        std::fs::read_to_string(home.join("analysis.ipynb")).map_err(failed("reading analysis.ipynb"))?;
    if !back.contains("first draft") {
        return Err("restore did not bring the notebook back".into());
    }
    out.say("the admin restores her whole home from the snapshot (`flashblade-csi restore`): analysis.ipynb is back");

    let stats = node
        .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
            volume_id: alice.volume_id.clone(),
            volume_path: home.display().to_string(),
            ..Default::default()
        })
        .await
        .map_err(rpc("NodeGetVolumeStats"))?
        .into_inner();
    let healthy = stats.volume_condition.as_ref().is_some_and(|c| !c.abnormal);
    let figure = |unit: i32| {
        stats.usage.iter().find(|u| u.unit == unit).map(|u| {
            if unit == csi::volume_usage::Unit::Bytes as i32 {
                format!(
                    "{:.1} GiB used of {:.1} GiB ({:.1} GiB free)",
                    u.used as f64 / (1u64 << 30) as f64,
                    u.total as f64 / (1u64 << 30) as f64,
                    u.available as f64 / (1u64 << 30) as f64
                )
            } else {
                format!("{} of {} inodes used", u.used, u.total)
            }
        })
    };
    let bytes = figure(csi::volume_usage::Unit::Bytes as i32).unwrap_or("no byte figures".into());
    let inodes = figure(csi::volume_usage::Unit::Inodes as i32).unwrap_or("no inode figures".into());
    out.say(format!(
        "the kubelet reads alice's usage: {bytes}, {inodes}; healthy: {}",
        if healthy { "yes" } else { "NO" }
    ));
    out.say("  (the simulator's directories sit on this machine's disk, so these are its figures; on a FlashBlade they are the file system's)");

    // Alice logs out: the pod goes away.
    for (target, staging, vol) in [
        (&home, &staging, alice.volume_id.as_str()),
        (&ds_target, &ds_staging, ds_vol),
        (&v1_target, &v1_staging, v1_vol),
    ] {
        unmount_for_pod(node, vol, staging, target, "at logout").await?;
    }
    out.say("alice logs out: her pod's mounts are removed");
    ctl.delete_snapshot(csi::DeleteSnapshotRequest {
        snapshot_id: snap.snapshot_id.clone(),
        ..Default::default()
    })
    .await
    .map_err(rpc("DeleteSnapshot"))?;
    Ok(())
}

/// Stages a volume and publishes it at `target`, as kubelet does for a pod.
pub(super) async fn mount_for_pod(
    node: &mut NodeClient<Channel>,
    volume_id: &str,
    volume_context: std::collections::HashMap<String, String>,
    staging: &Path,
    target: &Path,
    mode: csi::volume_capability::access_mode::Mode,
    what: &str,
) -> Step {
    let e = |call: &str| rpc(format!("{call} {what}"));
    node.node_stage_volume(csi::NodeStageVolumeRequest {
        volume_id: volume_id.into(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(cap(mode)),
        volume_context: volume_context.clone(),
        ..Default::default()
    })
    .await
    .map_err(e("NodeStageVolume"))?;
    node.node_publish_volume(csi::NodePublishVolumeRequest {
        volume_id: volume_id.into(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(cap(mode)),
        volume_context,
        ..Default::default()
    })
    .await
    .map_err(e("NodePublishVolume"))?;
    Ok(())
}

/// Unpublishes and unstages a volume, as kubelet does when the pod goes.
pub(super) async fn unmount_for_pod(
    node: &mut NodeClient<Channel>,
    volume_id: &str,
    staging: &Path,
    target: &Path,
    what: &str,
) -> Step {
    let e = |call: &str| rpc(format!("{call} {what}"));
    node.node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
        volume_id: volume_id.into(),
        target_path: target.display().to_string(),
    })
    .await
    .map_err(e("NodeUnpublishVolume"))?;
    node.node_unstage_volume(csi::NodeUnstageVolumeRequest {
        volume_id: volume_id.into(),
        staging_target_path: staging.display().to_string(),
    })
    .await
    .map_err(e("NodeUnstageVolume"))?;
    Ok(())
}

/// Stages and publishes `handle` as a pod would, reads analysis.ipynb from
/// it, and unmounts again.
pub(super) async fn reattach(
    node: &mut NodeClient<Channel>,
    kubelet: &Path,
    handle: &str,
    ctx: std::collections::HashMap<String, String>,
) -> Result<String, DemoError> {
    use csi::volume_capability::access_mode::Mode;
    let staging = kubelet.join("plugins/kubernetes.io/csi/flashblade.csi.dev/alice-recovered/globalmount");
    let target = kubelet.join("pods/jupyter-alice-2/volumes/kubernetes.io~csi/home/mount");
    mount_for_pod(
        node,
        handle,
        ctx,
        &staging,
        &target,
        Mode::SingleNodeWriter,
        "recovered",
    )
    .await?;
    let notebook = std::fs::read_to_string(target.join("analysis.ipynb"))
        .map_err(failed("reading the recovered analysis.ipynb"));
    unmount_for_pod(node, handle, &staging, &target, "recovered").await?;
    notebook
}

/// A write past a hard quota, refused. A 10 GiB home is too big to fill
/// here, so a 64 MiB volume of the same class takes its place.
pub(super) async fn quota_step(
    out: &mut Transcript,
    ctl: &mut ControllerClient<Channel>,
    node: &mut NodeClient<Channel>,
    kubelet: &Path,
) -> Step {
    use csi::volume_capability::access_mode::Mode;
    use std::io::Write;
    const MIB: usize = 1 << 20;
    let mut request = home_request("pvc-claim-alice-scratch".into());
    request.capacity_range = Some(csi::CapacityRange {
        required_bytes: 64 * MIB as i64,
        limit_bytes: 0,
    });
    let vol = ctl
        .create_volume(request)
        .await
        .map_err(rpc("CreateVolume scratch"))?
        .into_inner()
        .volume
        .unwrap_or_default();
    let staging = kubelet.join("plugins/kubernetes.io/csi/flashblade.csi.dev/alice-scratch/globalmount");
    let target = kubelet.join("pods/jupyter-alice/volumes/kubernetes.io~csi/scratch/mount");
    mount_for_pod(
        node,
        &vol.volume_id,
        vol.volume_context.clone(),
        &staging,
        &target,
        Mode::SingleNodeWriter,
        "scratch",
    )
    .await?;
    // 1 MiB at a time, each flushed, until the array says no.
    let mut file =
        std::fs::File::create(target.join("results.npy")).map_err(failed("creating results.npy"))?;
    let chunk = vec![0x5au8; MIB];
    let mut written = 0;
    let refused = loop {
        if written == 100 {
            break None;
        }
        match file.write_all(&chunk).and_then(|()| file.sync_data()) {
            Ok(()) => written += 1,
            Err(err) => break Some(err),
        }
    };
    drop(file);
    match refused {
        Some(err) if err.raw_os_error() == Some(nix::errno::Errno::EDQUOT as i32) => out.say(format!(
            "alice's 64 MiB scratch volume (same class, hard limit on) fills up: after {written} MiB the next write fails: {err}"
        )),
        other => {
            return Err(format!(
                "a write past a 64 MiB hard quota did not fail with EDQUOT after {written} MiB: {other:?}"
            ).into());
        }
    }
    unmount_for_pod(node, &vol.volume_id, &staging, &target, "scratch").await?;
    ctl.delete_volume(csi::DeleteVolumeRequest {
        volume_id: vol.volume_id,
        ..Default::default()
    })
    .await
    .map_err(rpc("DeleteVolume scratch"))?;
    Ok(())
}

/// `name` inside any snapshot directory under `home/.snapshot`, if the
/// array shows snapshots there.
pub(super) fn find_in_snapshot_dir(home: &Path, name: &str) -> Option<PathBuf> {
    let dir = std::fs::read_dir(home.join(".snapshot")).ok()?;
    dir.flatten().map(|e| e.path().join(name)).find(|p| p.is_file())
}
