//! Deviations from the documented behaviour, switched on at start: a real
//! array may differ from what the driver assumes, and `flashblade-csi
//! check-array` must notice. Off by default; each switch changes one fact.

use serde::{Deserialize, Serialize};

/// How the simulator departs from the behaviour the driver expects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quirks {
    /// Error messages without the words the driver matches ("does not
    /// exist", "already exists", "busy").
    pub other_error_texts: bool,
    /// List filters that compare `name` with `>` or `<` (keyset paging) are
    /// refused.
    pub no_keyset_paging: bool,
    /// A PATCH that renames and destroys a file system at once is refused.
    pub no_rename_with_destroy: bool,
    /// Snapshots appear under `.snapshot/` by their full name
    /// (`<fs>.<suffix>`) instead of their suffix.
    pub snapshot_entry_full_name: bool,
    /// The role `admins` reports for the API token's user (default
    /// `array_admin`).
    pub token_role: Option<String>,
}

/// The message the array sends instead of `message` under
/// [`Quirks::other_error_texts`].
pub(crate) fn other_text(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    if m.contains("does not exist") || m.contains("not found") {
        Some("No such object.")
    } else if m.contains("already exists") {
        Some("Name is in use.")
    } else if m.contains("busy") {
        Some("Try again later.")
    } else {
        None
    }
}

/// Whether a raw query string compares `name` with `>` or `<`.
pub(crate) fn compares_names(raw_query: &str) -> bool {
    let q = raw_query.to_ascii_lowercase();
    ["name>", "name<", "name%3e", "name%3c"]
        .iter()
        .any(|p| q.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_filters() {
        assert_eq!(other_text("File system does not exist."), Some("No such object."));
        assert_eq!(other_text("Snapshot already exists."), Some("Name is in use."));
        assert_eq!(other_text("Server is busy"), Some("Try again later."));
        assert_eq!(other_text("Invalid filter."), None);
        assert!(compares_names("filter=%28name%3D%27a%27%29+and+name%3E%27b%27"));
        assert!(!compares_names("filter=name%3D%27a%27"));
    }
}
