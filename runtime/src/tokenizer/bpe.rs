//! Byte-level BPE: turns one pre-tokenized piece into ids by applying merges in rank order
//! (lowest rank first, leftmost first among equal ranks), as the `BPE` model of `tokenizers`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use super::bytelevel::byte_to_char_table;
use crate::RuntimeError;

/// Pieces longer than this (bytes) are not cached.
const CACHE_MAX_PIECE_BYTES: usize = 128;
/// The cache stops growing at this many pieces.
const CACHE_CAPACITY: usize = 200_000;

/// A small fast hasher for short keys (word strings, id pairs); not DoS-resistant, which is
/// fine for a tokenizer's private maps.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// `HashMap` with `FxHasher`.
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Merge table and vocabulary of a byte-level BPE model.
#[derive(Debug)]
pub struct Bpe {
    /// Token string (byte-level form) → id, for the model's own tokens.
    vocab: FxMap<String, u32>,
    /// `(left << 32) | right` → `(rank, merged id)`.
    merges: FxMap<u64, (u32, u32)>,
    /// Id of the single-byte token of each byte value, if the vocabulary has it.
    byte_ids: [Option<u32>; 256],
    /// Take a piece whole when it is in the vocabulary, before merging.
    ignore_merges: bool,
    /// Piece (raw UTF-8 text) → ids.
    cache: Mutex<FxMap<String, Vec<u32>>>,
}

/// One symbol of a word being merged: a linked list over a vector.
#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    prev: u32,
    next: u32,
    alive: bool,
}

const NONE: u32 = u32::MAX;

/// Scratch buffers reused across the pieces of one `encode` call.
#[derive(Default)]
pub struct Scratch {
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Reverse<(u32, u32, u32)>>, // (rank, pos, merged id)
    text: String,
}

impl Bpe {
    /// Build from the vocabulary strings (`tokens[id]`, `None` for ids the model does not own:
    /// holes and added tokens) and merges in rank order.
    pub fn new(
        tokens: &[Option<&str>],
        merges: &[(String, String)],
        ignore_merges: bool,
    ) -> Result<Bpe, RuntimeError> {
        let mut vocab: FxMap<String, u32> = FxMap::default();
        for (id, t) in tokens.iter().enumerate() {
            if let Some(t) = t {
                let id = u32::try_from(id)
                    .map_err(|_| RuntimeError::Tokenizer("vocabulary larger than u32".into()))?;
                vocab.entry((*t).to_string()).or_insert(id);
            }
        }
        let mut merge_map: FxMap<u64, (u32, u32)> = FxMap::default();
        merge_map.reserve(merges.len());
        let mut joined = String::new();
        for (rank, (a, b)) in merges.iter().enumerate() {
            let find = |s: &str| {
                vocab.get(s).copied().ok_or_else(|| {
                    let e = dlm_formats::escape_controls;
                    RuntimeError::Tokenizer(format!(
                        "merge {rank} (`{} {}`) refers to `{}`, which is not in the vocabulary",
                        e(a),
                        e(b),
                        e(s)
                    ))
                })
            };
            let left = find(a)?;
            let right = find(b)?;
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            let merged = find(&joined)?;
            let rank = u32::try_from(rank)
                .map_err(|_| RuntimeError::Tokenizer("more than 2^32 merges".into()))?;
            // Like `tokenizers`, a repeated pair keeps its last rank.
            merge_map.insert(pair_key(left, right), (rank, merged));
        }
        let table = byte_to_char_table();
        let mut byte_ids = [None; 256];
        for (b, c) in table.iter().enumerate() {
            byte_ids[b] = vocab.get(c.encode_utf8(&mut [0u8; 4]) as &str).copied();
        }
        Ok(Bpe {
            vocab,
            merges: merge_map,
            byte_ids,
            ignore_merges,
            cache: Mutex::new(FxMap::default()),
        })
    }

    /// Lock the piece cache for one `encode` call, unless another thread holds it.
    pub fn cache(&self) -> Option<std::sync::MutexGuard<'_, FxMap<String, Vec<u32>>>> {
        self.cache.try_lock().ok()
    }

    /// Append the ids of `piece` (raw UTF-8 text of one pre-token) to `out`.
    pub fn encode_piece(
        &self,
        piece: &str,
        out: &mut Vec<u32>,
        scratch: &mut Scratch,
        cache: &mut Option<std::sync::MutexGuard<'_, FxMap<String, Vec<u32>>>>,
    ) {
        let bytes = piece.as_bytes();
        if bytes.len() == 1 && !self.ignore_merges {
            out.extend(self.byte_ids[bytes[0] as usize]);
            return;
        }
        let cacheable = bytes.len() <= CACHE_MAX_PIECE_BYTES;
        if cacheable
            && let Some(c) = cache.as_ref()
            && let Some(ids) = c.get(piece)
        {
            out.extend_from_slice(ids);
            return;
        }
        let start = out.len();
        self.merge_word(bytes, out, scratch);
        if cacheable
            && let Some(c) = cache.as_mut()
            && c.len() < CACHE_CAPACITY
        {
            c.insert(piece.to_string(), out[start..].to_vec());
        }
    }

    /// BPE of one word given as raw bytes; appends the ids to `out`.
    fn merge_word(&self, bytes: &[u8], out: &mut Vec<u32>, scratch: &mut Scratch) {
        if self.ignore_merges {
            let table = byte_to_char_table();
            scratch.text.clear();
            scratch
                .text
                .extend(bytes.iter().map(|&b| table[b as usize]));
            if let Some(&id) = self.vocab.get(scratch.text.as_str()) {
                out.push(id);
                return;
            }
        }
        let symbols = &mut scratch.symbols;
        symbols.clear();
        // Bytes with no token in the vocabulary are dropped, as `tokenizers` does without an
        // unknown token.
        for &b in bytes {
            if let Some(id) = self.byte_ids[b as usize] {
                let n = symbols.len() as u32;
                symbols.push(Symbol {
                    id,
                    prev: if n == 0 { NONE } else { n - 1 },
                    next: n + 1,
                    alive: true,
                });
            }
        }
        let n = symbols.len();
        if n == 0 {
            return;
        }
        symbols[n - 1].next = NONE;
        let heap = &mut scratch.heap;
        heap.clear();
        for i in 0..n - 1 {
            if let Some(&(rank, merged)) =
                self.merges.get(&pair_key(symbols[i].id, symbols[i + 1].id))
            {
                heap.push(Reverse((rank, i as u32, merged)));
            }
        }
        while let Some(Reverse((_, pos, merged))) = heap.pop() {
            let p = pos as usize;
            let cur = symbols[p];
            if !cur.alive || cur.next == NONE {
                continue;
            }
            let q = cur.next as usize;
            let right = symbols[q];
            // Stale entry: the pair at `pos` changed since it was pushed.
            match self.merges.get(&pair_key(cur.id, right.id)) {
                Some(&(_, m)) if m == merged => {}
                _ => continue,
            }
            symbols[p].id = merged;
            symbols[p].next = right.next;
            symbols[q].alive = false;
            if right.next != NONE {
                symbols[right.next as usize].prev = pos;
            }
            if cur.prev != NONE {
                let l = symbols[cur.prev as usize];
                if let Some(&(rank, m)) = self.merges.get(&pair_key(l.id, merged)) {
                    heap.push(Reverse((rank, cur.prev, m)));
                }
            }
            if right.next != NONE {
                let r = symbols[right.next as usize];
                if let Some(&(rank, m)) = self.merges.get(&pair_key(merged, r.id)) {
                    heap.push(Reverse((rank, pos, m)));
                }
            }
        }
        let mut i = 0u32;
        while i != NONE {
            let s = symbols[i as usize];
            out.push(s.id);
            i = s.next;
        }
    }
}

#[inline]
fn pair_key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scratch")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Bpe {
        // Byte tokens for a, b, c plus merges.
        let tokens = ["a", "b", "c", "ab", "bc", "abc", "aa", "aaa"];
        let tokens: Vec<Option<&str>> = tokens.iter().map(|t| Some(*t)).collect();
        let merges = [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "a"), ("aa", "a")];
        let merges: Vec<(String, String)> = merges
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Bpe::new(&tokens, &merges, false).expect("toy bpe")
    }

    fn enc(bpe: &Bpe, s: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut scratch = Scratch::default();
        bpe.encode_piece(s, &mut out, &mut scratch, &mut None);
        out
    }

    #[test]
    fn merges_by_rank() {
        let bpe = toy();
        assert_eq!(enc(&bpe, "abc"), [5]);
        assert_eq!(enc(&bpe, "bc"), [4]);
        // (a,a) merges leftmost first: aa|a then (aa,a) → aaa.
        assert_eq!(enc(&bpe, "aaa"), [7]);
        assert_eq!(enc(&bpe, "aaaa"), [6, 6]);
        // Unknown bytes are dropped.
        assert_eq!(enc(&bpe, "axb"), [3]);
    }

    #[test]
    fn rejects_unknown_merge_parts() {
        let tokens = [Some("a"), Some("b")];
        let merges = vec![("a".to_string(), "b".to_string())];
        assert!(Bpe::new(&tokens, &merges, false).is_err());
        let merges = vec![("a".to_string(), "z".to_string())];
        assert!(Bpe::new(&tokens, &merges, false).is_err());
    }
}
