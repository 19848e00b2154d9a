//! The KV cache as decoders hold it: an opaque box around the backend's own cache type
//! (host vectors for the CPU, device buffers for a GPU), kept between diffusion steps by the
//! Fast-dLLM prefix and dual caches and refreshed by Elastic-Cache.

use std::any::Any;

/// Keys and values (and optionally hidden states) of every layer for `len` canvas positions.
/// Made by [`super::Forward::new_cache`]; only the backend that made it can read it.
pub struct KvCache {
    len: usize,
    hidden: bool,
    state: Box<dyn Any + Send>,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("len", &self.len)
            .field("hidden", &self.hidden)
            .finish()
    }
}

impl KvCache {
    /// Wrap a backend's cache of `len` positions (`hidden`: it keeps hidden states too).
    pub fn new<C: Any + Send>(len: usize, hidden: bool, state: C) -> Self {
        KvCache {
            len,
            hidden,
            state: Box::new(state),
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
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
