//! The pre-tokenizer split of LLaMA-3 and Qwen2, written by hand (no regex engine).
//!
//! Both split text the way this Oniguruma pattern does with `find_iter` (leftmost-first
//! alternation, greedy quantifiers with backtracking):
//! ```text
//! (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```
//! LLaMA-3 groups up to three numbers (`\p{N}{1,3}`); Qwen2 takes one at a time (`\p{N}`).
//! Every character is covered by some alternative, so the pieces tile the text.

use super::unicode_tables::CLASS_RANGES;

/// Which split a tokenizer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// LLaMA-3: numbers in groups of up to three.
    Llama3,
    /// Qwen2: each number on its own.
    Qwen2,
}

impl PreTokenizer {
    /// Parse the `tokenizer.pre` value (`llama3` or `qwen2`).
    pub fn from_name(name: &str) -> Option<PreTokenizer> {
        match name {
            "llama3" => Some(PreTokenizer::Llama3),
            "qwen2" => Some(PreTokenizer::Qwen2),
            _ => None,
        }
    }

    /// The name stored in `tokenizer.pre`.
    pub fn name(self) -> &'static str {
        match self {
            PreTokenizer::Llama3 => "llama3",
            PreTokenizer::Qwen2 => "qwen2",
        }
    }

    /// Longest run of `\p{N}` one piece may hold.
    fn max_digits(self) -> usize {
        match self {
            PreTokenizer::Llama3 => 3,
            PreTokenizer::Qwen2 => 1,
        }
    }

    /// Call `piece` with each piece of `text`, in order; the pieces concatenate to `text`.
    pub fn split<'a>(self, text: &'a str, mut piece: impl FnMut(&'a str)) {
        let mut i = 0;
        while i < text.len() {
            let end = self.match_at(text, i);
            debug_assert!(end > i);
            piece(&text[i..end]);
            i = end;
        }
    }

    /// Collect the pieces of `text` (for tests and tools; `split` does not allocate).
    pub fn pieces(self, text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        self.split(text, |p| out.push(p));
        out
    }

    /// End (byte offset) of the match that starts at byte `i` of `text`; always `> i`.
    fn match_at(self, text: &str, i: usize) -> usize {
        let Some((c0, n0)) = char_at(text, i) else {
            return text.len();
        };
        let k0 = class_of(c0);
        let next = char_at(text, n0);

        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if c0 == '\''
            && let Some(end) = contraction(text, n0)
        {
            return end;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if k0 == CharClass::Letter {
            return skip_class(text, n0, CharClass::Letter, usize::MAX);
        }
        if (k0 == CharClass::Other || (k0 == CharClass::Space && !is_newline(c0)))
            && matches!(next, Some((c1, _)) if class_of(c1) == CharClass::Letter)
        {
            return skip_class(text, n0, CharClass::Letter, usize::MAX);
        }
        // \p{N}{1,3} or \p{N}
        if k0 == CharClass::Number {
            return skip_class(text, n0, CharClass::Number, self.max_digits() - 1);
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let others_from = if k0 == CharClass::Other {
            Some(n0)
        } else if c0 == ' ' {
            match next {
                Some((c1, n1)) if class_of(c1) == CharClass::Other => Some(n1),
                _ => None,
            }
        } else {
            None
        };
        if let Some(from) = others_from {
            let end = skip_class(text, from, CharClass::Other, usize::MAX);
            return skip_newlines(text, end);
        }
        // Only whitespace is left: c0 is \s.
        debug_assert_eq!(k0, CharClass::Space);
        // \s*[\r\n]+ : up to and including the last \r or \n of the whitespace run.
        let mut end = i;
        let mut last_newline_end = None;
        let mut n_chars = 0usize;
        let mut last_start = i;
        while let Some((c, n)) = char_at(text, end) {
            if class_of(c) != CharClass::Space {
                break;
            }
            if is_newline(c) {
                last_newline_end = Some(n);
            }
            last_start = end;
            end = n;
            n_chars += 1;
        }
        if let Some(e) = last_newline_end {
            return e;
        }
        // \s+(?!\S) : the whole run at the end of text, else all but its last char.
        if end == text.len() || n_chars == 1 {
            // \s+ (one whitespace char before a non-space) or the run at end of text.
            return end;
        }
        last_start
    }
}

/// Character classes of the split pattern; `\r` and `\n` are `Space` (see `is_newline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    /// `\p{L}`.
    Letter,
    /// `\p{N}`.
    Number,
    /// `\s` (Unicode White_Space).
    Space,
    /// Anything else (punctuation, symbols, marks, controls, unassigned).
    Other,
}

/// Class of `c` (ASCII fast path, then a binary search of the generated ranges).
#[inline]
pub fn class_of(c: char) -> CharClass {
    let cp = c as u32;
    if cp < 0x80 {
        let b = cp as u8;
        return if b.is_ascii_alphabetic() {
            CharClass::Letter
        } else if b.is_ascii_digit() {
            CharClass::Number
        } else if b == b' ' || (0x09..=0x0D).contains(&b) {
            CharClass::Space
        } else {
            CharClass::Other
        };
    }
    match CLASS_RANGES.binary_search_by(|&(lo, hi, _)| {
        if hi < cp {
            std::cmp::Ordering::Less
        } else if lo > cp {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    }) {
        Ok(k) => CLASS_RANGES[k].2,
        Err(_) => CharClass::Other,
    }
}

#[inline]
fn is_newline(c: char) -> bool {
    c == '\r' || c == '\n'
}

/// The char starting at byte `i` and the offset after it.
#[inline]
fn char_at(text: &str, i: usize) -> Option<(char, usize)> {
    let c = text.get(i..)?.chars().next()?;
    Some((c, i + c.len_utf8()))
}

/// Skip up to `max` chars of class `k` from byte `i`; returns the offset after them.
#[inline]
fn skip_class(text: &str, mut i: usize, k: CharClass, max: usize) -> usize {
    let mut n = 0;
    while n < max {
        match char_at(text, i) {
            Some((c, next)) if class_of(c) == k => i = next,
            _ => break,
        }
        n += 1;
    }
    i
}

/// Skip `[\r\n]*` from byte `i`.
#[inline]
fn skip_newlines(text: &str, mut i: usize) -> usize {
    let bytes = text.as_bytes();
    while i < bytes.len() && (bytes[i] == b'\r' || bytes[i] == b'\n') {
        i += 1;
    }
    i
}

/// After an apostrophe at `i - 1`: the end of `s|t|re|ve|m|ll|d` matched case-insensitively
/// (Unicode simple case folding, so `ſ` U+017F counts as `s`), if any.
fn contraction(text: &str, i: usize) -> Option<usize> {
    let (c1, n1) = char_at(text, i)?;
    let fold = |c: char| match c {
        'ſ' => 's',
        c => c.to_ascii_lowercase(),
    };
    match fold(c1) {
        's' | 't' | 'm' | 'd' => Some(n1),
        f @ ('r' | 'v' | 'l') => {
            let (c2, n2) = char_at(text, n1)?;
            let want = if f == 'l' { 'l' } else { 'e' };
            (fold(c2) == want).then_some(n2)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l3(s: &str) -> Vec<&str> {
        PreTokenizer::Llama3.pieces(s)
    }

    #[test]
    fn words_and_spaces() {
        assert_eq!(l3("Hello, world!"), ["Hello", ",", " world", "!"]);
        assert_eq!(l3("   leading"), ["  ", " leading"]);
        assert_eq!(l3("a  "), ["a", "  "]);
        assert_eq!(l3("a \t b"), ["a", " \t", " b"]);
        assert_eq!(l3("\thello"), ["\thello"]);
        assert_eq!(l3("\t!"), ["\t", "!"]);
        assert_eq!(l3(" !!\n\nx"), [" !!\n\n", "x"]);
    }

    #[test]
    fn newlines() {
        assert_eq!(l3("a\r\nb"), ["a", "\r\n", "b"]);
        assert_eq!(l3("  \n  hello"), ["  \n", " ", " hello"]);
        assert_eq!(l3("x \n \n y"), ["x", " \n \n", " y"]);
        assert_eq!(l3("\n"), ["\n"]);
    }

    #[test]
    fn contractions() {
        assert_eq!(
            l3("don't I'LL we'Ve"),
            ["don", "'t", " I", "'LL", " we", "'Ve"]
        );
        assert_eq!(l3("x'ſa"), ["x", "'ſ", "a"]);
        assert_eq!(l3("'hello"), ["'hello"]);
        assert_eq!(l3("''s"), ["''", "s"]);
        assert_eq!(l3("'r"), ["'r"]);
    }

    #[test]
    fn numbers() {
        assert_eq!(l3("12345 x"), ["123", "45", " x"]);
        assert_eq!(l3("12 !"), ["12", " !"]);
        assert_eq!(PreTokenizer::Qwen2.pieces("123"), ["1", "2", "3"]);
        assert_eq!(l3("1١²Ⅰ"), ["1١²", "Ⅰ"]);
    }

    #[test]
    fn unicode_classes() {
        // A combining mark is not a letter: it stands apart from the base letter.
        assert_eq!(l3("e\u{301}t"), ["e", "\u{301}t"]);
        assert_eq!(class_of('\u{1C89}'), CharClass::Letter); // Unicode 16.0
        assert_eq!(class_of('\u{1CCF0}'), CharClass::Number); // Unicode 16.0
        assert_eq!(class_of('\u{85}'), CharClass::Space);
        assert_eq!(class_of('\u{1C}'), CharClass::Other);
        assert_eq!(class_of('\u{16EE}'), CharClass::Number); // Nl
        assert_eq!(class_of('\u{300}'), CharClass::Other); // Mn
    }
}
