//! Added tokens (`<|eot_id|>`, `<|im_end|>`, ...): found verbatim in input text before any
//! other processing, leftmost first and, among those starting at one place, longest first (the
//! `LeftmostLongest` rule of `tokenizers`), honouring each token's `lstrip`, `rstrip` and
//! `single_word` flags as `tokenizers` does.

use super::pretokenize::{CharClass, class_of};
use dlm_formats::keys::tokenizer::added_flags as flag;

/// Finds added tokens in text.
#[derive(Debug, Default)]
pub struct AddedMatcher {
    /// `(content, id, flags)`, longest content first.
    entries: Vec<(String, u32, u32)>,
    /// For each first byte, the indices into `entries` that start with it (longest first).
    by_first: Vec<Vec<u32>>,
}

/// `\w` of the regex `tokenizers` uses for `single_word`: letters, numbers and `_` (marks and
/// joiners, also in `\w`, are not distinguished here).
fn is_word(c: char) -> bool {
    c == '_' || matches!(class_of(c), CharClass::Letter | CharClass::Number)
}

fn is_space(c: char) -> bool {
    class_of(c) == CharClass::Space
}

impl AddedMatcher {
    /// Build from `(content, id)` pairs without flags.
    #[cfg(test)]
    pub fn new(tokens: impl IntoIterator<Item = (String, u32)>) -> AddedMatcher {
        Self::with_flags(tokens.into_iter().map(|(s, id)| (s, id, 0)))
    }

    /// Build from `(content, id, flags)`; empty contents are ignored, and of two tokens with
    /// the same content the first one wins.
    pub fn with_flags(tokens: impl IntoIterator<Item = (String, u32, u32)>) -> AddedMatcher {
        let mut entries: Vec<(String, u32, u32)> = Vec::new();
        for (s, id, flags) in tokens {
            if !s.is_empty() && !entries.iter().any(|(e, _, _)| *e == s) {
                entries.push((s, id, flags));
            }
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        let mut by_first = vec![Vec::new(); 256];
        for (k, (s, _, _)) in entries.iter().enumerate() {
            by_first[s.as_bytes()[0] as usize].push(k as u32);
        }
        AddedMatcher { entries, by_first }
    }

    /// Id of the added token whose content is exactly `text`.
    pub fn id_of(&self, text: &str) -> Option<u32> {
        self.entries
            .iter()
            .find(|(s, _, _)| s == text)
            .map(|&(_, id, _)| id)
    }

    /// Call `found(start, end, id)` for each added token in `text`, left to right,
    /// non-overlapping; `start..end` are byte offsets on char boundaries and include the
    /// whitespace an `lstrip` / `rstrip` token takes. A `single_word` token touching a word
    /// character is no match, and (as in `tokenizers`) the search resumes after it.
    pub fn find_all(&self, text: &str, mut found: impl FnMut(usize, usize, u32)) {
        if self.entries.is_empty() {
            return;
        }
        let bytes = text.as_bytes();
        let mut i = 0;
        // End of the last match (with its stripped whitespace): lstrip never reaches before it.
        let mut last_end = 0;
        while i < bytes.len() {
            let cands = &self.by_first[bytes[i] as usize];
            let hit = cands
                .iter()
                .map(|&k| &self.entries[k as usize])
                .find(|(s, _, _)| bytes[i..].starts_with(s.as_bytes()));
            let Some((s, id, flags)) = hit else {
                i += 1;
                continue;
            };
            // A match of a whole UTF-8 string starts and ends on char boundaries.
            let (start, end) = (i, i + s.len());
            if flags & flag::SINGLE_WORD != 0 {
                let before = text[..start].chars().next_back().is_some_and(is_word);
                let after = text[end..].chars().next().is_some_and(is_word);
                if before || after {
                    i = end;
                    continue;
                }
            }
            let mut from = start;
            if flags & flag::LSTRIP != 0 {
                let kept = text[last_end..start].trim_end_matches(is_space).len();
                from = last_end + kept;
            }
            let mut to = end;
            if flags & flag::RSTRIP != 0 {
                to = text.len() - text[end..].trim_start_matches(is_space).len();
            }
            found(from, to, *id);
            last_end = to;
            i = to;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftmost_longest() {
        let m = AddedMatcher::new([
            ("<|a|>".to_string(), 1),
            ("<|a|><|b|>".to_string(), 2),
            ("|".to_string(), 3),
            ("é".to_string(), 4),
        ]);
        let mut hits = Vec::new();
        m.find_all("x<|a|><|b|>y<|a|>|é", |s, e, id| hits.push((s, e, id)));
        assert_eq!(hits, [(1, 11, 2), (12, 17, 1), (17, 18, 3), (18, 20, 4)]);
        assert_eq!(m.id_of("<|a|>"), Some(1));
        assert_eq!(m.id_of("<|a"), None);
    }

    #[test]
    fn strip_and_single_word_flags() {
        let m = AddedMatcher::with_flags([
            ("<L>".to_string(), 1, flag::LSTRIP),
            ("<R>".to_string(), 2, flag::RSTRIP),
            ("tok".to_string(), 3, flag::SINGLE_WORD),
        ]);
        let mut hits = Vec::new();
        m.find_all("a  <L> b<R> \t c", |s, e, id| hits.push((s, e, id)));
        // <L> takes the two spaces before it; <R> the space and tab after it.
        assert_eq!(hits, [(1, 6, 1), (8, 14, 2)]);
        hits.clear();
        m.find_all("tok x_tok tok2 (tok)", |s, e, id| hits.push((s, e, id)));
        assert_eq!(hits, [(0, 3, 3), (16, 19, 3)]);
        // lstrip does not reach into an earlier match.
        hits.clear();
        m.find_all("<R>  <L>", |s, e, id| hits.push((s, e, id)));
        assert_eq!(hits, [(0, 5, 2), (5, 8, 1)]);
    }
}
