//! Which part of a diffusion canvas is final, as text: the generated prefix with no mask left
//! before it can no longer change (every decoder commits a token once and never remasks it), so
//! it is what a stream may send. For LLaDA's blocks that is each block as it completes (and
//! sooner when a block fills left to right); for Dream's single canvas, the committed prefix.

use crate::Tokenizer;
use crate::decode::DecodeTokens;

/// Tracks the final prefix of one generation and hands out the text not yet sent.
#[derive(Debug)]
pub struct FinalText {
    prompt_len: usize,
    mask_id: u32,
    stop_ids: Vec<u32>,
    /// At most this many answer tokens are sent (`max_tokens`).
    limit: usize,
    /// Final ids seen at the last decode.
    seen_ids: usize,
    /// Bytes of the final ids, and how many of them were sent as text.
    bytes: Vec<u8>,
    sent_bytes: usize,
}

/// The answer's tokens in a canvas: `[prompt_len, first mask)` cut at the first stop token and
/// at `limit`, and whether that answer is complete (a stop token or the limit was reached).
pub fn final_ids<'c>(
    canvas: &'c [u32],
    prompt_len: usize,
    tokens: &DecodeTokens,
    limit: usize,
) -> (&'c [u32], bool) {
    let generated = canvas.get(prompt_len..).unwrap_or(&[]);
    let unmasked = generated
        .iter()
        .position(|&t| t == tokens.mask_id)
        .unwrap_or(generated.len());
    let prefix = &generated[..unmasked];
    let (end, stopped) = match prefix.iter().position(|t| tokens.stop_ids.contains(t)) {
        Some(i) => (i, true),
        None => (prefix.len(), false),
    };
    if end > limit {
        (&prefix[..limit], true)
    } else {
        (&prefix[..end], stopped || end == limit)
    }
}

impl FinalText {
    /// A tracker for a canvas whose prompt has `prompt_len` tokens.
    pub fn new(prompt_len: usize, tokens: &DecodeTokens, limit: usize) -> Self {
        FinalText {
            prompt_len,
            mask_id: tokens.mask_id,
            stop_ids: tokens.stop_ids.clone(),
            limit,
            seen_ids: 0,
            bytes: Vec::new(),
            sent_bytes: 0,
        }
    }

    fn tokens(&self) -> DecodeTokens {
        DecodeTokens {
            mask_id: self.mask_id,
            stop_ids: self.stop_ids.clone(),
            pad_id: None,
            shift_logits: false,
        }
    }

    /// The answer ids that are final in `canvas`, and whether the answer is complete.
    pub fn ids<'c>(&self, canvas: &'c [u32]) -> (&'c [u32], bool) {
        final_ids(canvas, self.prompt_len, &self.tokens(), self.limit)
    }

    /// The text that became final since the last call: whole characters only (a character
    /// whose bytes span two tokens waits for the second).
    pub fn update(&mut self, tok: &Tokenizer, canvas: &[u32]) -> String {
        let (ids, _) = self.ids(canvas);
        if ids.len() > self.seen_ids {
            // Ids that do not decode (never produced by the decoder) end the final text there.
            if let Ok(b) = tok.decode_bytes(ids, true) {
                self.bytes = b;
                self.seen_ids = ids.len();
            }
        }
        let (text, used) = complete_utf8(&self.bytes[self.sent_bytes..]);
        self.sent_bytes += used;
        text
    }

    /// Everything not sent yet once `canvas` is the finished output (an incomplete character
    /// at the very end becomes U+FFFD, as the whole answer's decode does).
    pub fn finish(&mut self, tok: &Tokenizer, canvas: &[u32]) -> String {
        let mut text = self.update(tok, canvas);
        text.push_str(&String::from_utf8_lossy(&self.bytes[self.sent_bytes..]));
        self.sent_bytes = self.bytes.len();
        text
    }
}

/// The longest prefix of `bytes` that ends on a character boundary, as text (invalid
/// sequences become U+FFFD), and its length in bytes; only an incomplete character at the end
/// is held back.
fn complete_utf8(bytes: &[u8]) -> (String, usize) {
    let mut out = String::new();
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return (out, bytes.len());
            }
            Err(e) => {
                let valid = e.valid_up_to();
                out.push_str(std::str::from_utf8(&rest[..valid]).unwrap_or_default());
                match e.error_len() {
                    Some(bad) => {
                        out.push('\u{FFFD}');
                        rest = &rest[valid + bad..];
                    }
                    None => return (out, bytes.len() - (rest.len() - valid)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> DecodeTokens {
        DecodeTokens {
            mask_id: 9,
            stop_ids: vec![7],
            pad_id: None,
            shift_logits: false,
        }
    }

    #[test]
    fn final_prefix_stops_at_the_first_mask_stop_and_limit() {
        let t = tokens();
        // prompt [1, 2], generated [3, 4, 9, 5]
        assert_eq!(
            final_ids(&[1, 2, 3, 4, 9, 5], 2, &t, 10),
            (&[3, 4][..], false)
        );
        assert_eq!(final_ids(&[1, 2, 3, 7, 9, 5], 2, &t, 10), (&[3][..], true));
        assert_eq!(
            final_ids(&[1, 2, 3, 4, 5, 6], 2, &t, 3),
            (&[3, 4, 5][..], true)
        );
        assert_eq!(
            final_ids(&[1, 2, 3, 4, 5], 2, &t, 3),
            (&[3, 4, 5][..], true)
        );
        assert_eq!(final_ids(&[1, 2, 9, 4], 2, &t, 3), (&[][..], false));
        assert_eq!(final_ids(&[1, 2], 2, &t, 3), (&[][..], false));
        assert_eq!(final_ids(&[1], 5, &t, 3), (&[][..], false));
    }

    #[test]
    fn utf8_is_cut_only_at_an_incomplete_last_character() {
        let e = "é".as_bytes(); // [0xC3, 0xA9]
        assert_eq!(complete_utf8(b"ab"), ("ab".into(), 2));
        assert_eq!(complete_utf8(&[b'a', e[0]]), ("a".into(), 1));
        assert_eq!(complete_utf8(&[b'a', e[0], e[1]]), ("aé".into(), 3));
        assert_eq!(complete_utf8(&[0xFF, b'x']), ("\u{FFFD}x".into(), 2));
        assert_eq!(complete_utf8(&[]), (String::new(), 0));
        let euro = "€".as_bytes();
        assert_eq!(complete_utf8(&euro[..2]), (String::new(), 0));
    }
}
