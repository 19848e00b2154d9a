//! Added tokens (`<|eot_id|>`, `<|im_end|>`, ...): found verbatim in input text before any
//! other processing, leftmost first and, among those starting at one place, longest first (the
//! `LeftmostLongest` rule of `tokenizers`).

/// Finds added tokens in text.
#[derive(Debug, Default)]
pub struct AddedMatcher {
    /// `(content, id)`, longest content first.
    entries: Vec<(String, u32)>,
    /// For each first byte, the indices into `entries` that start with it (longest first).
    by_first: Vec<Vec<u32>>,
}

impl AddedMatcher {
    /// Build from `(content, id)` pairs; empty contents are ignored, and of two tokens with the
    /// same content the first one wins.
    pub fn new(tokens: impl IntoIterator<Item = (String, u32)>) -> AddedMatcher {
        let mut entries: Vec<(String, u32)> = Vec::new();
        for (s, id) in tokens {
            if !s.is_empty() && !entries.iter().any(|(e, _)| *e == s) {
                entries.push((s, id));
            }
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        let mut by_first = vec![Vec::new(); 256];
        for (k, (s, _)) in entries.iter().enumerate() {
            by_first[s.as_bytes()[0] as usize].push(k as u32);
        }
        AddedMatcher { entries, by_first }
    }

    /// Id of the added token whose content is exactly `text`.
    pub fn id_of(&self, text: &str) -> Option<u32> {
        self.entries
            .iter()
            .find(|(s, _)| s == text)
            .map(|&(_, id)| id)
    }

    /// Call `found(start, end, id)` for each added token in `text`, left to right,
    /// non-overlapping; `start..end` are byte offsets on char boundaries.
    pub fn find_all(&self, text: &str, mut found: impl FnMut(usize, usize, u32)) {
        if self.entries.is_empty() {
            return;
        }
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let cands = &self.by_first[bytes[i] as usize];
            let hit = cands
                .iter()
                .map(|&k| &self.entries[k as usize])
                .find(|(s, _)| bytes[i..].starts_with(s.as_bytes()));
            match hit {
                Some((s, id)) => {
                    // A match of a whole UTF-8 string starts and ends on char boundaries.
                    found(i, i + s.len(), *id);
                    i += s.len();
                }
                None => i += 1,
            }
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
}
