//! The model: configuration read from a `.dlm` file, weights located in the file's bytes, and
//! the bidirectional forward pass over a [`crate::backend::Backend`].

mod config;
mod forward;
mod kv_cache;
pub mod profile;
mod request;
mod weights;

pub use config::{Family, ModelConfig};
pub use forward::Transformer;
pub use kv_cache::KvCache;
pub use profile::Timings;
pub use request::{Attend, LayerAttention, Output, Positions, Probe, Request, Response};
pub use weights::{LayerWeights, Matrix, Weights};

use crate::RuntimeError;
use crate::backend::Backend;
use crate::backend::cpu::CpuBackend;
use dlm_formats::DlmFile;
use std::path::Path;
use std::sync::Arc;

/// The forward pass as a decoder sees it. [`Transformer`] implements it for every backend;
/// tests use hand-made ones.
pub trait Forward {
    /// Rows of the embedding / head.
    fn vocab_size(&self) -> usize;

    /// Transformer blocks (what a `from_layer` counts).
    fn n_layers(&self) -> usize {
        1
    }

    /// Where the pass runs: `cpu`, `cuda:0`.
    fn device(&self) -> String {
        "cpu".into()
    }

    /// A cache able to hold `len` positions of every layer; with `hidden`, it also keeps the
    /// hidden state entering each layer (what [`Request::from_layer`] reads).
    fn new_cache(&self, len: usize, hidden: bool) -> Result<KvCache, RuntimeError>;

    /// Run one request; `cache` is read (attend), written (store) or both.
    fn run(&self, req: Request<'_>, cache: Option<&mut KvCache>) -> Result<Response, RuntimeError>;

    /// The raw logits `[rows.len(), vocab]` of a full forward of `tokens` from position 0.
    fn logits(&self, tokens: &[u32], rows: &[usize]) -> Result<Vec<f32>, RuntimeError> {
        Ok(self.run(Request::logits(tokens, 0, rows), None)?.logits)
    }
}

/// The bytes a model is read from: a memory map of the file, or a buffer.
pub type ModelBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A loaded model: the parsed header, the weights located in the bytes, and its forward pass
/// on a backend (the CPU unless [`Model::with_backend`] names another).
/// Read-only after loading, so one `Model` can serve many threads.
pub struct Model {
    bytes: ModelBytes,
    file: DlmFile,
    config: ModelConfig,
    weights: Weights,
    net: Box<dyn Forward + Send + Sync>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field("device", &self.net.device())
            .finish()
    }
}

impl Model {
    /// Map the `.dlm` file at `path` and load it on the CPU.
    pub fn open(path: &Path) -> Result<Self, RuntimeError> {
        let mapped = dlm_formats::MappedFile::open(path)?;
        Self::from_bytes(Arc::new(mapped))
    }

    /// Load a model on the CPU from the bytes of a whole `.dlm` file.
    pub fn from_bytes(bytes: ModelBytes) -> Result<Self, RuntimeError> {
        Self::with_backend(bytes.clone(), CpuBackend::new(bytes))
    }

    /// Load a model from the bytes of a whole `.dlm` file onto `backend` (which uploads or
    /// borrows every weight once, here).
    pub fn with_backend<B: Backend>(bytes: ModelBytes, backend: B) -> Result<Self, RuntimeError> {
        let data = (*bytes).as_ref();
        let file = DlmFile::parse(data)?;
        let config = ModelConfig::from_file(&file)?;
        let weights = Weights::locate(&file, data, &config)?;
        crate::integrity::check_small_weights(&weights)?;
        let net = Transformer::new(backend, config.clone(), &weights, data)?;
        Ok(Model {
            bytes,
            file,
            config,
            weights,
            net: Box::new(net),
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
}

impl Forward for Model {
    fn vocab_size(&self) -> usize {
        self.net.vocab_size()
    }

    fn n_layers(&self) -> usize {
        self.net.n_layers()
    }

    fn device(&self) -> String {
        self.net.device()
    }

    fn new_cache(&self, len: usize, hidden: bool) -> Result<KvCache, RuntimeError> {
        self.net.new_cache(len, hidden)
    }

    fn run(&self, req: Request<'_>, cache: Option<&mut KvCache>) -> Result<Response, RuntimeError> {
        self.net.run(req, cache)
    }
}
