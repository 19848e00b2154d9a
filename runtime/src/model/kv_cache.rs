//! The KV cache as decoders hold it: an opaque box around the backend's own cache type
//! (host vectors for the CPU, device buffers for a GPU), kept between diffusion steps by the
//! Fast-dLLM prefix and dual caches and refreshed by Elastic-Cache.

use std::any::Any;

/// Keys and values (and optionally hidden states) of every layer for `len` canvas positions.
/// Made by [`super::Forward::new_cache`]; only the backend that made it can read it.
pub struct KvCache {
    len: usize,
    /// Positions the next requests see, `1..=len` (all of them unless set).
    active: usize,
    hidden: bool,
    state: Box<dyn Any + Send>,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("len", &self.len)
            .field("active", &self.active)
            .field("hidden", &self.hidden)
            .finish()
    }
}

impl KvCache {
    /// Wrap a backend's cache of `len` positions (`hidden`: it keeps hidden states too).
    pub fn new<C: Any + Send>(len: usize, hidden: bool, state: C) -> Self {
        KvCache {
            len,
            active: len,
            hidden,
            state: Box::new(state),
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Positions `0..active_len()` are what a request sees: a cached pass attends to every
    /// one of them outside its span, and its span must end within them. All `len()` positions
    /// unless [`KvCache::set_active_len`] says fewer (a cache kept across generations of
    /// different canvas lengths, a chat's).
    pub fn active_len(&self) -> usize {
        self.active
    }

    /// Let requests see only positions `0..n` (the canvas of the next generation); the
    /// entries past `n` are kept, unread. An error when `n` is 0 or more than `len()`.
    pub fn set_active_len(&mut self, n: usize) -> Result<(), crate::RuntimeError> {
        if n == 0 || n > self.len {
            return Err(crate::RuntimeError::InvalidRequest(format!(
                "{n} active positions in a cache of {}",
                self.len
            )));
        }
        self.active = n;
        Ok(())
    }

    /// Whether it holds no position (never, for a cache a model made).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether it keeps the hidden states entering each layer.
    pub fn keeps_hidden(&self) -> bool {
        self.hidden
    }

    /// The backend's cache, when it is of type `C`.
    pub fn state<C: Any>(&self) -> Option<&C> {
        self.state.downcast_ref()
    }

    /// The backend's cache, mutably, when it is of type `C`.
    pub fn state_mut<C: Any>(&mut self) -> Option<&mut C> {
        self.state.downcast_mut()
    }
}
