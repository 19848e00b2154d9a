//! The model: configuration read from a `.dlm` file, weights viewed in the map, and the
//! bidirectional forward pass.

mod config;
mod forward;
mod kv_cache;
pub mod profile;
mod weights;

pub use config::{Family, ModelConfig};
pub use kv_cache::{Attend, KvCache};
pub use weights::{LayerWeights, Matrix, Weights};

use crate::RuntimeError;
use dlm_formats::DlmFile;
use forward::Rope;
use std::path::Path;
use std::sync::Arc;

/// The forward pass as a decoder sees it. `Model` implements it; tests use hand-made ones.
pub trait Forward {
    /// Rows of the embedding / head.
    fn vocab_size(&self) -> usize;

    /// A cache able to hold `len` positions of every layer.
    fn new_cache(&self, len: usize) -> KvCache;

    /// Run the span `tokens`, whose first token sits at absolute position `start`, attending to
    /// the span and to what `attend` names. When `store` is given, every layer's keys and
    /// values of the span are written into it at their absolute positions.
    /// Returns the logits of the span-relative rows `want`: `[want.len(), vocab_size]`.
    /// The logits are the raw outputs of each row (no `shift_logits` applied).
    fn forward(
        &self,
        tokens: &[u32],
        start: usize,
        attend: Attend<'_>,
        store: Option<&mut KvCache>,
        want: &[usize],
    ) -> Result<Vec<f32>, RuntimeError>;
}

/// The bytes a model is read from: a memory map of the file, or a buffer.
pub type ModelBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A loaded model: the parsed header, the weights located in the bytes, and the RoPE tables.
/// Read-only after loading, so one `Model` can serve many threads.
pub struct Model {
    bytes: ModelBytes,
    file: DlmFile,
    config: ModelConfig,
    weights: Weights,
    rope: Rope,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish()
    }
}

impl Model {
    /// Map the `.dlm` file at `path` and load it.
    pub fn open(path: &Path) -> Result<Self, RuntimeError> {
        let mapped = dlm_formats::MappedFile::open(path)?;
        Self::from_bytes(Arc::new(mapped))
    }

    /// Load a model from the bytes of a whole `.dlm` file.
    pub fn from_bytes(bytes: ModelBytes) -> Result<Self, RuntimeError> {
        let data = (*bytes).as_ref();
        let file = DlmFile::parse(data)?;
        let config = ModelConfig::from_file(&file)?;
        let weights = Weights::locate(&file, data, &config)?;
        let rope = Rope::new(config.head_dim(), config.seq_len, config.rope_theta);
        Ok(Model {
            bytes,
            file,
            config,
            weights,
            rope,
        })
    }

    /// The model's dimensions.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The parsed header (metadata and tensor directory).
    pub fn file(&self) -> &DlmFile {
        &self.file
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        (*self.bytes).as_ref()
    }

    /// The located weights.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    fn check_request(
        &self,
        tokens: &[u32],
        start: usize,
        attend: &Attend<'_>,
        store: &Option<&mut KvCache>,
        want: &[usize],
    ) -> Result<(), RuntimeError> {
        let bad = |m: String| Err(RuntimeError::InvalidRequest(m));
        let cfg = &self.config;
        let end = match start.checked_add(tokens.len()) {
            Some(end) if !tokens.is_empty() && end <= cfg.seq_len => end,
            _ => {
                return bad(format!(
                    "span of {} tokens at {start} does not fit the model's {} positions",
                    tokens.len(),
                    cfg.seq_len
                ));
            }
        };
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return bad(format!(
                "token id {t} outside the vocabulary of {}",
                cfg.vocab_size
            ));
        }
        if let Some(r) = want.iter().find(|&&r| r >= tokens.len()) {
            return bad(format!(
                "logits row {r} outside the span of {}",
                tokens.len()
            ));
        }
        let fits =
            |c: &KvCache| c.kv_dim == cfg.kv_dim() && c.k.len() == cfg.n_layers && c.len >= end;
        match attend {
            Attend::Prefix(c) | Attend::Dual(c) if !fits(c) => {
                return bad("the cache does not match this model or span".into());
            }
            _ => {}
        }
        if let Some(c) = store
            && !fits(c)
        {
            return bad("the cache to store into does not match this model or span".into());
        }
        Ok(())
    }
}

impl Forward for Model {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn new_cache(&self, len: usize) -> KvCache {
        KvCache::new(self.config.n_layers, len, self.config.kv_dim())
    }

    fn forward(
        &self,
        tokens: &[u32],
        start: usize,
        attend: Attend<'_>,
        store: Option<&mut KvCache>,
        want: &[usize],
    ) -> Result<Vec<f32>, RuntimeError> {
        self.check_request(tokens, start, &attend, &store, want)?;
        Ok(profile::timed(profile::Part::Forward, || {
            forward::forward(
                &self.config,
                &self.weights,
                &self.rope,
                self.bytes(),
                tokens,
                start,
                attend,
                store,
                want,
            )
        }))
    }
}
