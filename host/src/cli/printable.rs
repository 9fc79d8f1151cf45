//! Text that an adapter or a client chose, made safe to print on the
//! operator's terminal: a failure reason, a log line or an adapter's name
//! could otherwise carry escape sequences that recolour, move the cursor,
//! rewrite earlier lines or set the window title.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character written as a visible escape (`\u{1b}`),
/// newlines included: for one cell of a table, one line of output.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// The same, keeping newlines and tabs: for messages of several lines.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !keep(c);
    if !text.contains(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            write!(escaped, "\\u{{{:x}}}", u32::from(c)).expect("writing to a String");
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// C0 and C1 controls and DEL (ESC and CSI among them), and the invisible
/// marks that reorder text (bidirectional overrides and isolates).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
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
