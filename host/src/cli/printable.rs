//! Text that an adapter or a client chose, made safe to print on the
//! operator's terminal: a failure reason, a log line or an adapter's name
//! could otherwise carry escape sequences that recolour, move the cursor,
//! rewrite earlier lines or set the window title.

use std::borrow::Cow;

/// `text` with every control character ([`crate::text::is_control`]) written as a
/// visible escape (`\u{1b}`), newlines included: for one cell of a table,
/// one line of output.
pub fn printable(text: &str) -> Cow<'_, str> {
    crate::text::escape_controls(text, |_| true)
}

/// The same, keeping newlines and tabs: for messages of several lines.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    crate::text::escape_controls(text, |c| c != '\n' && c != '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_obey() {
        assert_eq!(printable("plain reason"), "plain reason");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert_eq!(
            printable("\u{1b}[2J\u{1b}]0;owned\u{7}red\r\nrow\u{9b}1m"),
            "\\u{1b}[2J\\u{1b}]0;owned\\u{7}red\\u{d}\\u{a}row\\u{9b}1m"
        );
        assert_eq!(printable("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(
            printable_lines("one\n\ttwo\u{1b}[1m"),
            "one\n\ttwo\\u{1b}[1m"
        );
        assert_eq!(printable("créé ✓"), "créé ✓");
    }
}
