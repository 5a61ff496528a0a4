//! The five steps of one volume's adoption, each checked before it is
//! taken (see the module documentation of `adopt`).

use super::*;

/// Why one volume stopped.
enum Stop {
    Refused(String),
    Failed(String),
}

impl From<ClusterError> for Stop {
    fn from(e: ClusterError) -> Self {
        // The report's reason: the whole chain, as nothing else shows it.
        Stop::Failed(crate::error::chain(&e))
    }
}

/// Where the claim of the old PV stands.
enum ClaimState {
    /// The old claim, bound to the old PV: still to be deleted.
    Old(Box<PersistentVolumeClaim>),
    /// Gone: to be created.
    Gone,
    /// Recreated, bound to the new PV.
    New,
}

pub(super) async fn adopt_one(s: &Session, cluster: &Cluster, args: &AdoptArgs, c: &Candidate) -> Adoption {
    let claim_ref = c.old.spec.as_ref().and_then(|sp| sp.claim_ref.as_ref());
    let mut a = Adoption {
        pv: c.name.clone(),
        kind: c.kind,
        claim: claim_ref.map(|r| {
            format!(
                "{}/{}",
                r.namespace.as_deref().unwrap_or_default(),
                r.name.as_deref().unwrap_or_default()
            )
        }),
        array: c.array.to_string(),
        file_system: c.fs.name.clone(),
        new_pv: c.new_name.clone(),
        volume_handle: c.handle.to_string(),
        status: Status::Planned,
        steps: Vec::new(),
        reason: None,
        notes: Vec::new(),
    };
    match run_steps(s, cluster, args, c, &mut a).await {
        Ok(()) => {
            let all_done = a.steps.iter().all(|st| st.state == StepState::Done);
            a.status = if all_done {
                Status::AlreadyAdopted
            } else if args.apply {
                Status::Adopted
            } else {
                Status::Planned
            };
        }
        Err(stop) => {
            let (status, why) = match stop {
                Stop::Refused(w) => (Status::Refused, w),
                Stop::Failed(w) => (Status::Failed, w),
            };
            a.status = status;
            a.reason = Some(why);
        }
    }
    a
}

fn pv_uid(pv: &PersistentVolume) -> String {
    pv.metadata.uid.clone().unwrap_or_default()
}

fn reclaim_policy(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Delete")
}

/// Plans the five steps from what the cluster holds now and, with
/// `--apply`, takes those not yet taken, in order.
async fn run_steps(
    s: &Session,
    cluster: &Cluster,
    args: &AdoptArgs,
    c: &Candidate,
    a: &mut Adoption,
) -> Result<(), Stop> {
    let spec = c.old.spec.clone().unwrap_or_default();
    let Some(claim_ref) = spec.claim_ref.as_ref() else {
        return Err(Stop::Refused(format!(
            "PV {} is not bound to a claim (phase {}): there is no claim to hand over; it stays as it is",
            c.name,
            c.old
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("unknown")
        )));
    };
    let claim: ClaimName = format!(
        "{}/{}",
        claim_ref.namespace.as_deref().unwrap_or_default(),
        claim_ref.name.as_deref().unwrap_or_default()
    )
    .parse()
    .map_err(|e| Stop::Refused(format!("PV {} has a claimRef that names no claim: {e}", c.name)))?;
    let recorded: Option<ClaimRecord> = match annotation(&c.old, CLAIM_RECORD) {
        None => None,
        Some(text) => Some(serde_json::from_str(text).map_err(|e| {
            Stop::Refused(format!(
                "PV {} carries an unreadable {CLAIM_RECORD} annotation ({e}); remove it and run again",
                c.name
            ))
        })?),
    };

    // The claim now.
    let pvc = cluster.claim(&claim).await?;
    let state = match pvc {
        None => ClaimState::Gone,
        Some(p) => {
            let bound_to = p.spec.as_ref().and_then(|s| s.volume_name.clone());
            let uid = p.metadata.uid.clone().unwrap_or_default();
            if bound_to.as_deref() == Some(c.new_name.as_str()) {
                ClaimState::New
            } else if bound_to.as_deref() == Some(c.name.as_str())
                || claim_ref.uid.as_deref() == Some(uid.as_str())
            {
                ClaimState::Old(Box::new(p))
            } else {
                return Err(Stop::Refused(format!(
                    "claim {claim} exists but is not PV {}'s (it is bound to {}): someone made a new one under that name (JupyterHub, when a user started a server?). Stop the user's server, delete that claim if it holds nothing, and run adopt again",
                    c.name,
                    bound_to.as_deref().unwrap_or("nothing yet")
                )));
            }
        }
    };
    let record = match (&state, recorded) {
        (ClaimState::Old(p), _) => Some(ClaimRecord::of(p)),
        (_, r) => r,
    };
    if matches!(state, ClaimState::Gone) && record.is_none() {
        return Err(Stop::Refused(format!(
            "claim {claim} of PV {} was deleted before adopt recorded it: there is no claim to recreate; the PV stays as it is",
            c.name
        )));
    }

    // The replacement PV, if made already, must be this volume's.
    let new_pv = cluster.pv(&c.new_name).await?;
    let expected_handle = c.handle.to_string();
    if let Some(existing) = &new_pv {
        let csi = existing.spec.as_ref().and_then(|s| s.csi.as_ref());
        let ours = csi
            .is_some_and(|x| x.driver == s.config.driver_name && x.volume_handle == expected_handle)
            && annotation(existing, ADOPTED_FROM) == Some(c.name.as_str());
        if !ours {
            return Err(Stop::Refused(format!(
                "PV {} exists and is not the replacement of {} (driver {}, handle {}); delete or rename it, then run again",
                c.new_name,
                c.name,
                csi.map(|x| x.driver.as_str()).unwrap_or("none"),
                csi.map(|x| x.volume_handle.as_str()).unwrap_or("none"),
            )));
        }
    }

    // Never while a pod may write through the old PV: refused before any step.
    if let ClaimState::Old(_) = &state {
        let pods = cluster.pods_using(&claim).await?;
        if !pods.is_empty() {
            return Err(Stop::Refused(format!(
                "claim {claim} is in use by pod {} (not finished): stop it first (JupyterHub: stop the user's server); nothing was changed for this volume",
                pods.join(", pod ")
            )));
        }
    }

    let was = reclaim_policy(&c.old).to_string();
    let (class, reclaim) = match c.kind {
        Kind::Csi => (
            args.storage_class.clone().or(spec.storage_class_name.clone()),
            args.reclaim_policy.clone(),
        ),
        // The driver never deletes a static volume: Delete would only leave
        // the PV Failed.
        Kind::Nfs => (
            args.dataset_storage_class
                .clone()
                .or(spec.storage_class_name.clone()),
            "Retain".to_string(),
        ),
    };
    let class = class.unwrap_or_default();
    let read_only = match c.kind {
        Kind::Csi => spec.csi.as_ref().and_then(|x| x.read_only).unwrap_or(false),
        Kind::Nfs => true,
    };
    if c.kind == Kind::Nfs && !spec.nfs.as_ref().and_then(|n| n.read_only).unwrap_or(false) {
        a.notes.push(
            "the in-tree PV was mounted read-write; the replacement is a static volume, always mounted read-only"
                .into(),
        );
    }

    let mut steps: Vec<(Step, bool)> = vec![
        (
            Step {
                step: StepKind::Retain,
                action: if was == "Retain" {
                    format!("record claim {claim} on PV {} (already Retain)", c.name)
                } else {
                    format!(
                        "set PV {}'s reclaim policy to Retain (it is {was}) and record claim {claim} on it",
                        c.name
                    )
                },
                state: StepState::Planned,
            },
            was == "Retain"
                && (annotation(&c.old, CLAIM_RECORD).is_some() || matches!(state, ClaimState::New)),
        ),
        (
            Step {
                step: StepKind::CreatePv,
                action: format!(
                    "create PV {} ({}, {} volume {expected_handle}, {reclaim}, class {:?}{}, bound to {claim})",
                    c.new_name,
                    s.config.driver_name,
                    match c.kind {
                        Kind::Csi => "managed",
                        Kind::Nfs => "static",
                    },
                    class,
                    if read_only { ", read-only" } else { "" },
                ),
                state: StepState::Planned,
            },
            new_pv.is_some(),
        ),
        (
            Step {
                step: StepKind::DeleteClaim,
                action: format!(
                    "delete claim {claim} (bound to {}; the file system stays)",
                    c.name
                ),
                state: StepState::Planned,
            },
            !matches!(state, ClaimState::Old(_)),
        ),
        (
            Step {
                step: StepKind::CreateClaim,
                action: format!("create claim {claim} bound to {}", c.new_name),
                state: StepState::Planned,
            },
            matches!(state, ClaimState::New),
        ),
        (
            Step {
                step: StepKind::DeleteOldPv,
                action: format!("delete PV {} (Retain: file system {} stays)", c.name, c.fs.name),
                state: StepState::Planned,
            },
            c.old.metadata.deletion_timestamp.is_some(),
        ),
    ];
    for (step, done) in &mut steps {
        if *done {
            step.state = StepState::Done;
        }
    }
    a.steps = steps.iter().map(|(st, _)| st.clone()).collect();
    if !args.apply {
        return Ok(());
    }

    let pair = || {
        let record = record.clone().unwrap_or_else(|| ClaimRecord {
            uid: String::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            access_modes: Vec::new(),
            storage: None,
            storage_class_name: None,
            volume_mode: None,
        });
        let capacity = spec
            .capacity
            .as_ref()
            .and_then(|m| m.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| c.fs.provisioned.unwrap_or(0).to_string());
        let mut pv_annotations = BTreeMap::from([(ADOPTED_FROM.to_string(), c.name.clone())]);
        if c.kind == Kind::Csi {
            // The external-provisioner deletes only the PVs it provisioned.
            pv_annotations.insert(
                "pv.kubernetes.io/provisioned-by".into(),
                s.config.driver_name.clone(),
            );
        }
        BoundPair {
            pv_name: c.new_name.clone(),
            driver: s.config.driver_name.clone(),
            volume_handle: expected_handle.clone(),
            attributes: attributes(
                &c.array,
                &c.fs.name,
                Some(&c.server),
                &nfs_versions_text(
                    c.fs.nfs.v3_enabled.unwrap_or(false),
                    c.fs.nfs.v4_1_enabled.unwrap_or(false),
                ),
            ),
            capacity: capacity.clone(),
            access_modes: spec.access_modes.clone().unwrap_or_default(),
            reclaim_policy: reclaim.clone(),
            storage_class: class.clone(),
            read_only,
            mount_options: spec.mount_options.clone().unwrap_or_default(),
            volume_mode: spec.volume_mode.clone(),
            pv_labels: c.old.metadata.labels.clone().unwrap_or_default(),
            pv_annotations,
            claim: claim.clone(),
            claim_access_modes: (!record.access_modes.is_empty()).then(|| record.access_modes.clone()),
            claim_request: record.storage.clone(),
            claim_labels: record.labels.clone(),
            claim_annotations: record.annotations.clone(),
        }
    };

    for (i, (step, done)) in steps.iter().enumerate() {
        if *done {
            continue;
        }
        let result = match step.step {
            StepKind::Retain => retain(cluster, c, record.as_ref()).await,
            StepKind::CreatePv => match serde_json::from_value::<PersistentVolume>(pair().pv()) {
                Ok(pv) => create_pv(cluster, &pv, c).await,
                Err(e) => Err(Stop::Failed(format!("building PV {}: {e}", c.new_name))),
            },
            StepKind::DeleteClaim => delete_claim(cluster, args, c, &claim, &state).await,
            StepKind::CreateClaim => match serde_json::from_value::<PersistentVolumeClaim>(pair().claim()) {
                Ok(pvc) => create_claim(cluster, &pvc, c, &claim).await,
                Err(e) => Err(Stop::Failed(format!("building claim {claim}: {e}"))),
            },
            StepKind::DeleteOldPv => delete_old_pv(cluster, c).await,
        };
        match result {
            Ok(()) => a.steps[i].state = StepState::Applied,
            Err(stop) => {
                a.steps[i].state = StepState::Failed;
                for later in a.steps.iter_mut().skip(i + 1) {
                    if later.state == StepState::Planned {
                        later.state = StepState::NotReached;
                    }
                }
                return Err(stop);
            }
        }
    }
    Ok(())
}

/// Step 1: Retain, and the claim recorded, in one patch; read back.
async fn retain(cluster: &Cluster, c: &Candidate, record: Option<&ClaimRecord>) -> Result<(), Stop> {
    let mut patch = json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"}});
    if let Some(r) = record {
        patch["metadata"] =
            json!({"annotations": {CLAIM_RECORD: serde_json::to_string(r).expect("serialisable")}});
    }
    let pv = cluster.merge_patch_pv(&c.name, &patch).await?;
    if reclaim_policy(&pv) != "Retain" {
        return Err(Stop::Failed(format!(
            "PV {} still has reclaim policy {} after the patch; nothing else was done",
            c.name,
            reclaim_policy(&pv)
        )));
    }
    Ok(())
}

async fn create_pv(cluster: &Cluster, pv: &PersistentVolume, c: &Candidate) -> Result<(), Stop> {
    match cluster.create_pv(pv).await {
        Ok(_) => Ok(()),
        // Made in between (another adopt?): the next run checks it is ours.
        Err(e) if e.is_conflict() => Err(Stop::Failed(format!(
            "PV {} appeared while adopting {}; run adopt again to check it",
            c.new_name, c.name
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Step 3: only with the old PV read back as Retain; then waits until the
/// claim is gone (its protection finalizer holds it while a pod uses it).
async fn delete_claim(
    cluster: &Cluster,
    args: &AdoptArgs,
    c: &Candidate,
    claim: &ClaimName,
    state: &ClaimState,
) -> Result<(), Stop> {
    let ClaimState::Old(pvc) = state else {
        return Ok(());
    };
    let now = cluster
        .pv(&c.name)
        .await?
        .ok_or_else(|| Stop::Failed(format!("PV {} vanished; claim {claim} was not deleted", c.name)))?;
    if reclaim_policy(&now) != "Retain" {
        return Err(Stop::Failed(format!(
            "PV {} is not Retain (it is {}); claim {claim} was not deleted",
            c.name,
            reclaim_policy(&now)
        )));
    }
    // Again, just before: a server may have started since the first check.
    let pods = cluster.pods_using(claim).await?;
    if !pods.is_empty() {
        return Err(Stop::Refused(format!(
            "claim {claim} is in use by pod {} (started during adopt): stop it and run adopt again; the steps above are done and stay",
            pods.join(", pod ")
        )));
    }
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    if pvc.metadata.deletion_timestamp.is_none() {
        match cluster.delete_claim(claim, &uid).await {
            Ok(()) => {}
            Err(e) if e.is_conflict() => {
                return Err(Stop::Failed(format!(
                    "claim {claim} changed while adopting (another object by that name?); run adopt again"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let deadline = Instant::now() + args.claim_timeout;
    loop {
        match cluster.claim(claim).await? {
            None => return Ok(()),
            Some(p) if p.metadata.uid.as_deref() != Some(uid.as_str()) => return Ok(()),
            Some(p) if Instant::now() >= deadline => {
                return Err(Stop::Failed(format!(
                    "claim {claim} is still being deleted after {}s (finalizers: {}; a pod may still use it); run adopt again once it is gone",
                    args.claim_timeout.as_secs(),
                    p.metadata.finalizers.unwrap_or_default().join(", ")
                )));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Step 5: the old PV object, only while it is still Retain (deleting a
/// Delete PV can make its driver delete the storage).
async fn delete_old_pv(cluster: &Cluster, c: &Candidate) -> Result<(), Stop> {
    let Some(now) = cluster.pv(&c.name).await? else {
        return Ok(());
    };
    if reclaim_policy(&now) != "Retain" {
        return Err(Stop::Failed(format!(
            "PV {} is {} again, not Retain: it was not deleted; set it to Retain and run adopt again",
            c.name,
            reclaim_policy(&now)
        )));
    }
    match cluster.delete_pv(&c.name, &pv_uid(&c.old)).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_conflict() => Err(Stop::Failed(format!(
            "PV {} was replaced by another object of that name while adopting; run adopt again",
            c.name
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn create_claim(
    cluster: &Cluster,
    pvc: &PersistentVolumeClaim,
    c: &Candidate,
    claim: &ClaimName,
) -> Result<(), Stop> {
    match cluster.create_claim(pvc).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => Err(Stop::Failed(format!(
            "claim {claim} was created by someone else after the old one was deleted (JupyterHub?); it is not bound to {}. Stop the user's server, delete that claim if it holds nothing, and run adopt again",
            c.new_name
        ))),
        Err(e) => Err(e.into()),
    }
}
