//! Message helpers: caller input echoed into errors stays bounded, so a
//! hostile 10 KB id cannot make a status message that clients refuse. A leaf
//! module: everything may use it, it uses nothing of the crate.

/// Longest piece of caller input echoed inside a message.
pub(crate) const MAX_ECHO: usize = 96;

/// `s` cut to at most `max` bytes (on a character boundary), saying how
/// much was left out.
pub(crate) fn bounded(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let total = s.len();
    let mut cut = max.saturating_sub(40);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(&format!("… ({} more bytes)", total - cut));
    s
}

/// Caller input for a message: quoted, cut to a readable length.
pub(crate) fn clip(input: &str) -> String {
    bounded(format!("{input:?}"), MAX_ECHO)
}
