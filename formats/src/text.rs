//! Text from a model file (token strings, merges, names) shown in messages: control characters
//! are escaped so a hostile file cannot move the cursor, clear the screen or forge log lines.

use std::borrow::Cow;

/// `s` with control characters (C0, DEL, C1, and the bidi overrides) written as `\n`, `\t`,
/// `\u{1b}`…; other text unchanged.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    let needs =
        |c: char| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs(c) {
            out.extend(c.escape_default());
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
    fn controls_are_escaped() {
        assert_eq!(escape_controls("Ġthe"), "Ġthe");
        assert_eq!(escape_controls("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(escape_controls("x\u{202E}y\u{85}"), "x\\u{202e}y\\u{85}");
    }
}
