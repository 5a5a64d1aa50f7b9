//! Text cut to size. Wharf quotes other programs' output and its callers' input in reasons,
//! error messages and reports; each kind keeps at most a named number of characters, so a
//! runaway line never fills a row, a log or a screen.

/// A reason or a line an agent reports (why a build or rollout ended, a line of its log).
pub const REASON_CHARS: usize = 2000;
/// A line quoted from another program's answer: an HTTP error body, a service's message.
pub const QUOTED_CHARS: usize = 300;
/// A line of a container's own log, kept with a rollout that failed its health check.
pub const LOG_LINE_CHARS: usize = 500;
/// What an agent says about itself (its version, its host) beyond its name.
pub const DETAIL_CHARS: usize = 200;
/// A caller's input repeated in an error message.
pub const ECHOED_CHARS: usize = 40;

/// The first `max_chars` characters of `text`.
pub fn clip(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// `text` cut to its first `max_chars` characters, without copying text that fits.
pub fn clip_owned(text: String, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => text[..end].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_at_characters_not_bytes() {
        assert_eq!(clip("héllo", 2), "hé");
        assert_eq!(clip("hi", 5), "hi");
        assert_eq!(clip_owned("héllo".to_owned(), 2), "hé");
        assert_eq!(clip_owned("hi".to_owned(), 2), "hi");
        assert_eq!(clip_owned(String::new(), 0), "");
    }
}
