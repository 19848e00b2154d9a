//! Keys and values kept from one generation to the next: a chat's earlier turns. The leading
//! positions of a new prompt that repeat, token for token, what the cache's entries were
//! computed from are not run again ([`super::generate_with_context`]).

use super::{CacheMode, DecodeParams, DecodeTokens};
use crate::RuntimeError;
use crate::model::{Forward, KvCache};

/// The token recorded for a cache position that holds no entry.
pub(super) const NONE: u32 = u32::MAX;

/// The smallest cache made: a chat's first turns then share one.
const MIN_CAPACITY: usize = 256;

/// A KV cache kept across generations, with the token each position's keys and values were
/// computed from. Made empty; the first generation fills it. Not shared between threads'
/// conversations: one per conversation.
#[derive(Debug)]
pub struct ContextCache {
    /// Positions it may grow to (the conversation's context).
    max_len: usize,
    /// Positions of the first cache made.
    first_len: usize,
    cache: Option<KvCache>,
    /// `[cache len]`: the token at each position when its entries were last stored.
    stored: Vec<u32>,
}

impl ContextCache {
    /// An empty context for canvases of at most `max_len` positions. The cache is made at the
    /// first generation and grows (doubling, up to `max_len`) when a canvas outgrows it; a
    /// grown cache starts empty, so that turn computes everything once more.
    pub fn new(max_len: usize) -> Self {
        ContextCache {
            max_len,
            first_len: MIN_CAPACITY,
            cache: None,
            stored: Vec::new(),
        }
    }

    /// An empty context whose first cache already holds all `max_len` positions, so it never
    /// grows (and never starts over for growing): for a model whose whole context is cheap.
    pub fn whole(max_len: usize) -> Self {
        ContextCache {
            first_len: max_len,
            ..Self::new(max_len)
        }
    }

    /// Forget every entry (a conversation reset, or history dropped from its start).
    pub fn clear(&mut self) {
        self.cache = None;
        self.stored.clear();
    }

    /// Positions the cache holds now (0 before the first generation).
    pub fn capacity(&self) -> usize {
        self.cache.as_ref().map_or(0, KvCache::len)
    }

    /// Bytes the next generation's cache asks for, for a canvas of `len` positions, given
    /// `bytes_per_position` (`2 × n_layers × kv_dim × 4` on the CPU).
    pub fn bytes_for(&self, len: usize, bytes_per_position: usize) -> usize {
        self.next_capacity(len).saturating_mul(bytes_per_position)
    }

    /// How many leading tokens of `prompt` the cache holds entries of.
    pub fn matching_prefix(&self, prompt: &[u32]) -> usize {
        prompt
            .iter()
            .zip(&self.stored)
            .take_while(|(a, b)| a == b)
            .count()
    }

    /// Whether a run with `params` can reuse entries (classifier-free guidance runs an
    /// uncached pass; the elastic cache refreshes every position from some layer on).
    pub fn can_reuse(params: &DecodeParams) -> bool {
        params.cfg_scale == 0.0 && params.cache != CacheMode::Elastic
    }

    /// The capacity of the cache that a canvas of `len` positions runs in.
    fn next_capacity(&self, len: usize) -> usize {
        let have = self.capacity();
        if have >= len {
            return have;
        }
        len.max(2 * have)
            .max(self.first_len)
            .min(self.max_len)
            .max(len)
    }

    /// The cache for a canvas of `len` positions after `prompt`, the tokens of its
    /// positions, and how many leading positions are reused. A cache too small is replaced
    /// by a larger, empty one.
    pub(super) fn take_for(
        &mut self,
        model: &dyn Forward,
        tokens: &DecodeTokens,
        prompt: &[u32],
        len: usize,
    ) -> Result<(KvCache, Vec<u32>, usize), RuntimeError> {
        let cap = self.next_capacity(len);
        if cap != self.capacity() {
            self.clear();
            self.cache = Some(model.new_cache(cap, false)?);
            self.stored = vec![NONE; cap];
        }
        // A mask in the prompt is a position to decode: it and what follows run again. With
        // shifted logits the row before the first position decoded is run too.
        let first_mask = prompt
            .iter()
            .position(|&t| t == tokens.mask_id)
            .unwrap_or(prompt.len());
        let mut frozen = self.matching_prefix(prompt).min(first_mask);
        if tokens.shift_logits {
            frozen = frozen.saturating_sub(1);
        }
        let mut cache = match self.cache.take() {
            Some(c) => c,
            None => model.new_cache(cap, false)?,
        };
        cache.set_active_len(len)?;
        Ok((cache, std::mem::take(&mut self.stored), frozen))
    }

    /// Keep a run's cache for the next generation.
    pub(super) fn put_back(&mut self, cache: KvCache, stored: Vec<u32>) {
        self.cache = Some(cache);
        self.stored = stored;
    }
}
