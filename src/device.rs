//! Which hardware a model runs on: `cpu` (the default), or `cuda` / `cuda:N` in a build with
//! the `cuda` feature. One place for the CLI's `--device` and the C ABI's
//! `dlm_model_open_on`.

use dlm_runtime::RuntimeError;
use dlm_runtime::model::Model;
use std::path::Path;

/// Open the `.dlm` file at `path` on `device`.
///
/// `cpu` maps the file and borrows its weights; `cuda[:N]` uploads them to GPU N (0 when
/// left out). Anything else, or CUDA in a build without it, is an error naming the choice.
pub fn open_model(path: &Path, device: &str) -> Result<Model, RuntimeError> {
    if device == "cpu" {
        return Model::open(path);
    }
    if device == "cuda" || device.starts_with("cuda:") {
        return open_cuda(path, device);
    }
    Err(RuntimeError::InvalidRequest(format!(
        "unknown device {device:?}: expected cpu, cuda or cuda:N"
    )))
}

#[cfg(feature = "cuda")]
fn open_cuda(path: &Path, device: &str) -> Result<Model, RuntimeError> {
    let ordinal = dlm_cuda::parse_device(device).ok_or_else(|| {
        RuntimeError::InvalidRequest(format!(
            "bad device {device:?}: expected cuda or cuda:N with N a GPU number"
        ))
    })?;
    let backend = dlm_cuda::CudaBackend::new(ordinal)?;
    let mapped = dlm_formats::MappedFile::open(path)?;
    Model::with_backend(std::sync::Arc::new(mapped), backend)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_path: &Path, device: &str) -> Result<Model, RuntimeError> {
    Err(RuntimeError::Unsupported(format!(
        "device {device} asked for, but this dlm was built without CUDA (rebuild with \
         `cargo build --release --features cuda`)"
    )))
}
