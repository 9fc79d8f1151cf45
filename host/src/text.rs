//! Text the host did not write (a client's value, an adapter's reason, a log
//! line) is cut, checked and escaped here, the same way everywhere: cut to a
//! byte bound on a character boundary with one marker, refused or escaped
//! when it holds a character that controls how text is shown.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` cut to at most `max` bytes on a character boundary, followed by
/// the marker `… [truncated: N bytes]` (N the length it had) when it was
/// cut: a stored failure reason, a quoted value in an error message.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let end = text.floor_char_boundary(max);
    Cow::Owned(format!(
        "{}… [truncated: {} bytes]",
        &text[..end],
        text.len()
    ))
}

/// Whether `c` controls how text is shown rather than being shown: C0 and
/// C1 controls and DEL (NUL, ESC and CSI among them), and the invisible
/// marks that reorder text (bidirectional overrides and isolates). No id
/// holds one, and none reaches a terminal unescaped.
pub fn is_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Whether `text` holds a [control character](is_control).
pub fn has_control(text: &str) -> bool {
    text.contains(is_control)
}

/// `text` with every [control character](is_control) for which `escaped`
/// holds written as a visible escape (`\u{1b}`); the rest as it is.
pub fn escape_controls(text: &str, escaped: impl Fn(char) -> bool) -> Cow<'_, str> {
    let escape = |c: char| is_control(c) && escaped(c);
    if !text.contains(escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escape(c) {
            write!(out, "\\u{{{:x}}}", u32::from(c)).expect("writing to a String");
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_a_character_boundary_with_the_marker() {
        assert_eq!(truncate("short", 8), "short");
        assert!(matches!(truncate("short", 8), Cow::Borrowed(_)));
        let cut = truncate("abé-and-more", 3);
        assert_eq!(cut, "ab… [truncated: 13 bytes]");
    }

    #[test]
    fn finds_and_escapes_control_characters() {
        assert!(has_control("a\u{0}b") && has_control("a\u{202e}b") && has_control("\u{7f}"));
        assert!(!has_control("créé ✓ \u{a0}"));
        assert_eq!(
            escape_controls("\u{1b}[2J\r\nrow\u{9b}1m", |_| true),
            "\\u{1b}[2J\\u{d}\\u{a}row\\u{9b}1m"
        );
        assert_eq!(escape_controls("one\n", |c| c != '\n'), "one\n");
    }
}
