//! The driver's error type and the one place where errors become gRPC status
//! codes. The sidecars and kubelet decide whether to retry from the code, so
//! each mapping says why it was chosen.

use std::error::Error as StdError;

use tonic::{Code, Status};

pub(crate) use crate::text::{bounded, clip};

/// The typed error behind an outcome (a mount's io error, a rule's parse
/// error, Kubernetes' answer), kept so the status and logs show the cause.
pub type Cause = Box<dyn StdError + Send + Sync>;

/// Errors a CSI handler can end with. Variants name the outcome the caller must
/// act on, not the layer that failed; `source` is the failure under it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or names something unsupported.
    #[error("{message}")]
    InvalidArgument {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// The named volume, snapshot or path does not exist.
    #[error("{message}")]
    NotFound {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// The name is taken by an object that does not match the request.
    #[error("{message}")]
    AlreadyExists {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// A capacity that the driver or the array cannot satisfy.
    #[error("{message}")]
    OutOfRange {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// No array the request allows has room for it now; or the node did not
    /// measure a volume because a limit is held by stuck calls elsewhere.
    #[error("{message}")]
    ResourceExhausted {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// The object is in a state that forbids the operation (e.g. an imported
    /// dataset volume that the driver must never delete).
    #[error("{message}")]
    FailedPrecondition {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// Another call for the same volume or name is in flight.
    #[error("{message}")]
    Aborted {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// The array or a mount is unreachable or overloaded for now.
    #[error("{message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// The operation did not finish within its deadline; it may still complete.
    #[error("{message}")]
    DeadlineExceeded {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// A bug or an unexpected answer; the message says what happened.
    #[error("{message}")]
    Internal {
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// The array refused or failed; the code follows from what it said.
    #[error(transparent)]
    Array(#[from] crate::flashblade::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A name or id the array returned that the driver cannot use: the array
/// answered something it should not have.
pub(crate) fn from_array(e: crate::volume::NameError) -> Error {
    Error::internal(format!("the array returned {e}")).because(e)
}

/// Constructors: the outcome's message, without a cause; add one with
/// [`Error::because`].
macro_rules! constructors {
    ($($name:ident => $variant:ident),* $(,)?) => {
        impl Error {
            $(
                pub(crate) fn $name(message: impl Into<String>) -> Self {
                    Error::$variant { message: message.into(), source: None }
                }
            )*
        }
    };
}

constructors! {
    invalid_argument => InvalidArgument,
    not_found => NotFound,
    already_exists => AlreadyExists,
    out_of_range => OutOfRange,
    resource_exhausted => ResourceExhausted,
    failed_precondition => FailedPrecondition,
    aborted => Aborted,
    unavailable => Unavailable,
    deadline_exceeded => DeadlineExceeded,
    internal => Internal,
}

impl Error {
    /// The same outcome, caused by `cause` (which the status message and the
    /// logs then show after the outcome's own message).
    pub(crate) fn because(mut self, cause: impl Into<Cause>) -> Self {
        if let Some(slot) = self.source_slot() {
            *slot = Some(cause.into());
        }
        self
    }

    /// A request the caller must fix, with the validator's typed error as
    /// the cause: its text is the message.
    pub(crate) fn invalid(cause: impl StdError + Send + Sync + 'static) -> Self {
        Error::invalid_argument(cause.to_string()).because(cause)
    }

    fn source_slot(&mut self) -> Option<&mut Option<Cause>> {
        match self {
            Error::InvalidArgument { source, .. }
            | Error::NotFound { source, .. }
            | Error::AlreadyExists { source, .. }
            | Error::OutOfRange { source, .. }
            | Error::ResourceExhausted { source, .. }
            | Error::FailedPrecondition { source, .. }
            | Error::Aborted { source, .. }
            | Error::Unavailable { source, .. }
            | Error::DeadlineExceeded { source, .. }
            | Error::Internal { source, .. } => Some(source),
            Error::Array(_) => None,
        }
    }

    /// The same outcome and cause with the message rewritten (an array
    /// error is left as the array said it).
    pub(crate) fn map_message(mut self, f: impl FnOnce(String) -> String) -> Self {
        if let Some(message) = self.message_slot() {
            *message = f(std::mem::take(message));
        }
        self
    }

    fn message_slot(&mut self) -> Option<&mut String> {
        match self {
            Error::InvalidArgument { message, .. }
            | Error::NotFound { message, .. }
            | Error::AlreadyExists { message, .. }
            | Error::OutOfRange { message, .. }
            | Error::ResourceExhausted { message, .. }
            | Error::FailedPrecondition { message, .. }
            | Error::Aborted { message, .. }
            | Error::Unavailable { message, .. }
            | Error::DeadlineExceeded { message, .. }
            | Error::Internal { message, .. } => Some(message),
            Error::Array(_) => None,
        }
    }

    /// The gRPC code. The sidecars and kubelet retry or give up by it, so
    /// each says why it was chosen.
    pub(crate) fn code(&self) -> Code {
        match self {
            // Final: the sidecar records the error and will not succeed by
            // retrying the same request.
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            // Final for the request; kubelet treats NOT_FOUND on unpublish /
            // unstage as "already gone".
            Error::NotFound { .. } => Code::NotFound,
            // Final: the provisioner must not retry a name that maps to a
            // different volume.
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            // Final: the capacity request cannot be met.
            Error::OutOfRange { .. } => Code::OutOfRange,
            // Retried with backoff: freed or added capacity (or a freed
            // statfs thread) makes it succeed. Says "not measured", where
            // an abnormal condition would say "seen failing".
            Error::ResourceExhausted { .. } => Code::ResourceExhausted,
            // Retried with backoff by the sidecars, but only an admin action
            // (or a state change) makes it succeed.
            Error::FailedPrecondition { .. } => Code::FailedPrecondition,
            // Retried with backoff: the concurrent call will finish first.
            Error::Aborted { .. } => Code::Aborted,
            // Retried: a transient array or network condition. Not final, so
            // the provisioner keeps the "maybe provisioned" state and replays
            // the same name, which our idempotent lookups resolve.
            Error::Unavailable { .. } => Code::Unavailable,
            // Retried and not final: the work may have happened on the array.
            Error::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            // Retried by the sidecars; logged loudly.
            Error::Internal { .. } => Code::Internal,
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
        Status::new(err.code(), status_message(&err))
    }
}

/// The error's text followed by its causes, each once: a cause whose text
/// the message already contains (many messages quote their cause) is not
/// repeated.
pub(crate) fn chain(err: &(dyn StdError + 'static)) -> String {
    let (message, causes) = split_chain(err);
    if causes.is_empty() {
        message
    } else {
        format!("{message}: {causes}")
    }
}

/// The message and the "caused by: …" tail of `err`.
fn split_chain(err: &(dyn StdError + 'static)) -> (String, String) {
    let message = err.to_string();
    let mut shown = message.clone();
    let mut causes = String::new();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !shown.contains(&text) {
            if !causes.is_empty() {
                causes.push_str(": ");
            }
            causes.push_str("caused by: ");
            causes.push_str(&text);
            shown.push_str(&text);
        }
        next = cause.source();
    }
    (message, causes)
}

/// The status message: the chain within [`MAX_STATUS_MESSAGE`], keeping the
/// first cause even when the message itself is long (an echoed 10 KB id
/// must not push out why the call failed).
fn status_message(err: &Error) -> String {
    let (message, causes) = split_chain(err);
    if causes.is_empty() {
        return bounded(message, MAX_STATUS_MESSAGE);
    }
    let causes = bounded(causes, MAX_STATUS_MESSAGE / 2);
    let room = MAX_STATUS_MESSAGE - causes.len() - 2;
    format!("{}: {causes}", bounded(message, room))
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
            (Error::invalid_argument("a"), Code::InvalidArgument),
            (Error::not_found("a"), Code::NotFound),
            (Error::already_exists("a"), Code::AlreadyExists),
            (Error::out_of_range("a"), Code::OutOfRange),
            (Error::resource_exhausted("a"), Code::ResourceExhausted),
            (Error::failed_precondition("a"), Code::FailedPrecondition),
            (Error::aborted("a"), Code::Aborted),
            (Error::unavailable("a"), Code::Unavailable),
            (Error::deadline_exceeded("a"), Code::DeadlineExceeded),
            (Error::internal("a"), Code::Internal),
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
        let status = Status::from(Error::invalid_argument(format!("volume id {long} is bad")));
        assert!(
            status.message().len() <= MAX_STATUS_MESSAGE,
            "{}",
            status.message().len()
        );
        assert!(status.message().ends_with("more bytes)"));
        assert!(clip(&long).len() <= crate::text::MAX_ECHO);
        assert_eq!(clip("pvc-1"), "\"pvc-1\"");
    }

    #[test]
    fn the_status_message_carries_the_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading the answer")]
        struct Outer(#[source] std::io::Error);
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer");
        // Every cause, nested, in order.
        let err = Error::unavailable("array fb01 did not answer").because(Outer(io()));
        let status = Status::from(err);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "array fb01 did not answer: caused by: reading the answer: caused by: connection reset by peer"
        );
        // A cause the message already quotes is not repeated.
        #[derive(Debug, thiserror::Error)]
        #[error("cannot create /mnt/x: {0}")]
        struct Quoting(#[source] std::io::Error);
        let status = Status::from(Error::unavailable("staging failed").because(Quoting(io())));
        assert_eq!(
            status.message(),
            "staging failed: caused by: cannot create /mnt/x: connection reset by peer"
        );
        let status = Status::from(Error::unavailable("staging pvc-1 failed").because(Outer(io())));
        assert!(
            status.message().starts_with("staging pvc-1 failed: caused by: "),
            "{}",
            status.message()
        );
        let rule = crate::volume::RuleError::Mode("x".into());
        assert_eq!(
            Status::from(Error::invalid(rule.clone())).message(),
            rule.to_string()
        );
    }

    #[test]
    fn a_long_message_keeps_its_first_cause() {
        let io = std::io::Error::other("the first cause");
        let err = Error::internal("é".repeat(5_000)).because(io);
        let status = Status::from(err);
        assert!(
            status.message().len() <= MAX_STATUS_MESSAGE,
            "{}",
            status.message().len()
        );
        assert!(
            status.message().ends_with("caused by: the first cause"),
            "{}",
            status.message()
        );
    }

    /// reqwest's errors, kept as sources, name the URL but never a header:
    /// the API token sent with a failed login stays out of every rendering.
    #[tokio::test]
    async fn transport_errors_never_carry_the_token() {
        use crate::flashblade::Error as Fb;
        let tls = crate::flashblade::tls::client_config(None, false).unwrap();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        // Nothing listens on port 1: the connection is refused.
        let source = http
            .post("http://127.0.0.1:1/api/login?x=1")
            .header("api-token", "T-secret-token-value")
            .send()
            .await
            .unwrap_err();
        let err = Fb::Unavailable {
            array: "fb01".into(),
            attempts: 1,
            last: crate::flashblade::error::Transport::Http {
                step: crate::flashblade::error::Step::Login,
                source,
            },
        };
        let err = Error::from(err);
        for text in [
            format!("{err:?}"),
            chain(&err),
            tonic::Status::from(err).message().to_string(),
        ] {
            assert!(text.contains("127.0.0.1:1"), "{text}");
            assert!(!text.contains("T-secret-token-value"), "{text}");
        }
    }
}
