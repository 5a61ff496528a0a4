//! What the driver assumes about the array that one cheap look at start can
//! confirm or refute. `check-array` proves each assumption in full (on a
//! throwaway file system); the controller only reads, once, what costs
//! nothing to read, and says precisely what will not work as documented.

use super::client::{ArrayClient, Call};
use super::error::{ApiErrorKind, Error};
use super::filter::Filter;
use super::models::ArraySpace;
use super::ops::ArrayInfo;

/// The first REST 2.x minor version that renames a file system by PATCH.
pub(crate) const RENAME_MINOR: u32 = 16;

/// Warnings about what `arrays` said at login.
pub(crate) fn startup_warnings(info: &ArrayInfo) -> Vec<String> {
    let mut w = Vec::new();
    if info.rest_minor < RENAME_MINOR {
        w.push(format!(
            "REST 2.{} is below 2.{RENAME_MINOR}: a file system cannot be renamed, so a soft-deleted volume keeps its name (no tombstone): a new claim of the same name is refused until the array eradicates it, and `recover` needs --nfs-versions",
            info.rest_minor
        ));
    }
    if info.manual_eradication.as_deref() == Some("disabled") {
        w.push(
            "the array refuses manual eradication (eradication_config.manual_eradication: disabled): deletePolicy eradicate leaves file systems destroyed until the array's eradication delay ends".into(),
        );
    }
    w
}

/// A warning when `arrays/space` lacks the field placement weighs (judged
/// on the first read placement makes anyway: no request of its own).
pub(crate) fn space_warning(sp: &ArraySpace) -> Option<String> {
    if sp.space.total_used.is_some() {
        return None;
    }
    Some(format!(
        "arrays/space has no space.total_used (REST before 2.16?): placement weighs capacity minus {} instead",
        if sp.space.total_physical.is_some() {
            "space.total_physical"
        } else {
            "space.virtual"
        }
    ))
}

/// Asks for an object that cannot exist by `key=value` (`ids=` with a
/// random id: the array must refuse it, as it refuses a PATCH or DELETE of
/// a gone object) and returns the refusal as the driver classifies it. A
/// read: nothing changes.
pub(crate) async fn probe_missing(
    client: &ArrayClient,
    resource: &'static str,
    key: &'static str,
    value: &str,
) -> Result<Refusal, Error> {
    let r = client
        .call(Call::get(
            resource,
            vec![(key, value.to_string())],
            format!("look up {resource} {key}={value} (expected to be missing)"),
        ))
        .await;
    refusal(r)
}

/// An id no object has (random, in the array's shape).
pub(crate) fn absent_id() -> String {
    let v: u128 = rand::random();
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A refusal the driver classifies by its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// `None`: the array did not refuse.
    pub status: Option<u16>,
    pub message: String,
    pub kind: Option<ApiErrorKind>,
}

/// The array's answer as a [`Refusal`]; errors other than an API refusal
/// (transport, timeout) stay errors.
pub(crate) fn refusal(r: Result<serde_json::Value, Error>) -> Result<Refusal, Error> {
    match r {
        Ok(_) => Ok(Refusal {
            status: None,
            message: "accepted".into(),
            kind: None,
        }),
        Err(Error::Api {
            status,
            kind,
            message,
            ..
        }) => Ok(Refusal {
            status: Some(status),
            message,
            kind: Some(kind),
        }),
        Err(e) => Err(e),
    }
}

/// Logs what [`startup_warnings`] finds in `arrays`' answer.
pub(crate) fn warn_at_start(client: &ArrayClient, info: &ArrayInfo) {
    for w in startup_warnings(info) {
        tracing::warn!(array = %client.name(), "{w}");
    }
}

/// One harmless read of an id no one has: warns when the array's answer
/// does not read as "does not exist" to the driver. Sent beside the login
/// read of `arrays`, so it adds no wait of its own.
pub(crate) async fn check_not_found_wording(client: &ArrayClient) {
    if let Ok(r) = probe_missing(client, "file-systems", "ids", &absent_id()).await
        && r.kind != Some(ApiErrorKind::NotFound)
    {
        tracing::warn!(
            array = %client.name(),
            status = ?r.status,
            message = %r.message,
            "the array's answer for a missing file system does not read as \"does not exist\" to the driver: deletes of volumes already gone may fail instead of succeeding; run `flashblade-csi check-array` and report the result"
        );
    }
}

/// One harmless sorted read with `name>'…'` (of a name no one has): warns
/// when the array refuses keyset paging, which every paged list uses.
pub(crate) async fn check_keyset_paging(client: &ArrayClient) {
    let filter = Filter::id(&absent_id()).after("0");
    if let Err(e @ Error::Api { .. }) = client
        .list_file_systems_sorted(&filter, None, 1, None, true)
        .await
    {
        tracing::warn!(
            array = %client.name(),
            error = %e,
            "the array refuses name>'…' with sort=name (keyset paging): ListVolumes and ListSnapshots with a page size fail; run `flashblade-csi check-array` and report the result"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flashblade::models::Space;

    fn info(minor: u32, erad: Option<&str>) -> ArrayInfo {
        ArrayInfo {
            name: "fb".into(),
            version: "Purity//FB 4.5.0".into(),
            rest_minor: minor,
            manual_eradication: erad.map(str::to_string),
        }
    }

    #[test]
    fn warnings() {
        assert!(startup_warnings(&info(17, Some("enabled"))).is_empty());
        let w = startup_warnings(&info(15, None));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("below 2.16") && w[0].contains("tombstone"), "{w:?}");
        let w = startup_warnings(&info(17, Some("disabled")));
        assert!(w[0].contains("manual eradication"), "{w:?}");
    }

    #[test]
    fn space() {
        let with = |space: Space| ArraySpace { capacity: 10, space };
        assert_eq!(
            space_warning(&with(Space {
                total_used: Some(1),
                ..Default::default()
            })),
            None
        );
        let w = space_warning(&with(Space {
            total_physical: Some(1),
            ..Default::default()
        }))
        .unwrap();
        assert!(w.contains("space.total_physical"), "{w}");
    }
}
