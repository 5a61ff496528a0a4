//! The driver's error type and the one place where errors become gRPC status
//! codes. The sidecars and kubelet decide whether to retry from the code, so
//! each mapping says why it was chosen.

use tonic::{Code, Status};

pub(crate) use crate::text::{bounded, clip};

/// Errors a CSI handler can end with. Variants name the outcome the caller must
/// act on, not the layer that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or names something unsupported.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named volume, snapshot or path does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken by an object that does not match the request.
    #[error("{0}")]
    AlreadyExists(String),
    /// A capacity that the driver or the array cannot satisfy.
    #[error("{0}")]
    OutOfRange(String),
    /// No array the request allows has room for it now; or the node did not
    /// measure a volume because a limit is held by stuck calls elsewhere.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The object is in a state that forbids the operation (e.g. an imported
    /// dataset volume that the driver must never delete).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Another call for the same volume or name is in flight.
    #[error("{0}")]
    Aborted(String),
    /// The array or a mount is unreachable or overloaded for now.
    #[error("{0}")]
    Unavailable(String),
    /// The operation did not finish within its deadline; it may still complete.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A bug or an unexpected answer; the message says what happened.
    #[error("{0}")]
    Internal(String),
    /// The array refused or failed; the code follows from what it said.
    #[error(transparent)]
    Array(#[from] crate::flashblade::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A name or id the array returned that the driver cannot use: the array
/// answered something it should not have.
pub(crate) fn from_array(e: crate::volume::NameError) -> Error {
    Error::Internal(format!("the array returned {e}"))
}

impl Error {
    /// The gRPC code. The sidecars and kubelet retry or give up by it, so
    /// each says why it was chosen.
    pub(crate) fn code(&self) -> Code {
        match self {
            // Final: the sidecar records the error and will not succeed by
            // retrying the same request.
            Error::InvalidArgument(_) => Code::InvalidArgument,
            // Final for the request; kubelet treats NOT_FOUND on unpublish /
            // unstage as "already gone".
            Error::NotFound(_) => Code::NotFound,
            // Final: the provisioner must not retry a name that maps to a
            // different volume.
            Error::AlreadyExists(_) => Code::AlreadyExists,
            // Final: the capacity request cannot be met.
            Error::OutOfRange(_) => Code::OutOfRange,
            // Retried with backoff: freed or added capacity (or a freed
            // statfs thread) makes it succeed. Says "not measured", where
            // an abnormal condition would say "seen failing".
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            // Retried with backoff by the sidecars, but only an admin action
            // (or a state change) makes it succeed.
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            // Retried with backoff: the concurrent call will finish first.
            Error::Aborted(_) => Code::Aborted,
            // Retried: a transient array or network condition. Not final, so
            // the provisioner keeps the "maybe provisioned" state and replays
            // the same name, which our idempotent lookups resolve.
            Error::Unavailable(_) => Code::Unavailable,
            // Retried and not final: the work may have happened on the array.
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            // Retried by the sidecars; logged loudly.
            Error::Internal(_) => Code::Internal,
            Error::Array(e) => array_code(e),
        }
    }

    /// Whether the failure is the driver's or the array's (logged as a
    /// warning) rather than a refusal of the request (logged as info).
    pub(crate) fn is_failure(&self) -> bool {
        matches!(
            self.code(),
            Code::Internal | Code::Unavailable | Code::DeadlineExceeded
        )
    }
}

fn array_code(e: &crate::flashblade::Error) -> Code {
    use crate::flashblade::Error as Fb;
    use crate::flashblade::error::ApiErrorKind as Kind;
    match e {
        Fb::Api {
            kind: Kind::NotFound, ..
        } => Code::NotFound,
        Fb::Api {
            kind: Kind::AlreadyExists,
            ..
        } => Code::AlreadyExists,
        // The array refused the request as it stands (validation or state):
        // retrying the same request will not help until something changes.
        Fb::Api { status: 400, .. } => Code::FailedPrecondition,
        Fb::Api { .. } | Fb::Protocol { .. } => Code::Internal,
        // Credentials, overload, unknown outcomes and unreachable arrays are
        // transient from the sidecar's point of view: it retries and our
        // idempotent lookups make the retry safe.
        Fb::Unauthorized { .. } | Fb::Unavailable { .. } | Fb::Ambiguous { .. } => Code::Unavailable,
        Fb::Timeout { .. } => Code::DeadlineExceeded,
        Fb::Version { .. } | Fb::Setup { .. } => Code::FailedPrecondition,
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        Status::new(err.code(), bounded(err.to_string(), MAX_STATUS_MESSAGE))
    }
}

/// Longest status message sent. The message travels in a header
/// (percent-encoded, up to three times longer); C-core clients refuse
/// headers past 8 KiB, and a message echoing a 10 KB id helps nobody.
pub(crate) const MAX_STATUS_MESSAGE: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_one_to_one() {
        let cases = [
            (Error::InvalidArgument("a".into()), Code::InvalidArgument),
            (Error::NotFound("a".into()), Code::NotFound),
            (Error::AlreadyExists("a".into()), Code::AlreadyExists),
            (Error::OutOfRange("a".into()), Code::OutOfRange),
            (Error::ResourceExhausted("a".into()), Code::ResourceExhausted),
            (Error::FailedPrecondition("a".into()), Code::FailedPrecondition),
            (Error::Aborted("a".into()), Code::Aborted),
            (Error::Unavailable("a".into()), Code::Unavailable),
            (Error::DeadlineExceeded("a".into()), Code::DeadlineExceeded),
            (Error::Internal("a".into()), Code::Internal),
        ];
        for (err, code) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), "a");
        }
    }

    #[test]
    fn array_errors_keep_their_source_and_map_by_kind() {
        use crate::flashblade::Error as Fb;
        use crate::flashblade::error::ApiErrorKind;
        let api = |status, message: &str| Fb::Api {
            array: "fb01".into(),
            status,
            kind: ApiErrorKind::classify(status, message),
            message: message.into(),
            context: None,
        };
        for (e, code) in [
            (api(400, "File system does not exist."), Code::NotFound),
            (api(400, "File system already exists."), Code::AlreadyExists),
            (
                api(400, "Requested size is below current usage."),
                Code::FailedPrecondition,
            ),
            (api(422, "odd"), Code::Internal),
            (
                Fb::Timeout {
                    array: "fb01".into(),
                    seconds: 1.0,
                    what: "x".into(),
                },
                Code::DeadlineExceeded,
            ),
        ] {
            let err = Error::from(e);
            assert_eq!(err.code(), code, "{err}");
            assert!(err.to_string().starts_with("array fb01: "), "{err}");
            // The array's error travels whole, not as a copied string.
            assert!(matches!(err, Error::Array(_)));
        }
    }

    #[test]
    fn messages_are_bounded() {
        let long = "é".repeat(10_000);
        let status = Status::from(Error::InvalidArgument(format!("volume id {long} is bad")));
        assert!(
            status.message().len() <= MAX_STATUS_MESSAGE,
            "{}",
            status.message().len()
        );
        assert!(status.message().ends_with("more bytes)"));
        assert!(clip(&long).len() <= crate::text::MAX_ECHO);
        assert_eq!(clip("pvc-1"), "\"pvc-1\"");
    }
}
