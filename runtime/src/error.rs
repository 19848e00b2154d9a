//! The one error type of the runtime.

use dlm_formats::FormatError;
use std::fmt;

/// What can go wrong loading a model or running it.
#[derive(Debug)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The file is unreadable or malformed.
    Format(FormatError),
    /// The file is well-formed but describes something this runtime cannot run.
    Unsupported(String),
    /// A request (flags, prompt, lengths) that cannot be honoured.
    InvalidRequest(String),
    /// Text that cannot be tokenized or ids that cannot be decoded.
    Tokenizer(String),
    /// The step callback asked to stop.
    Cancelled,
    /// A buffer the request or the file needs could not be allocated.
    OutOfMemory {
        /// What the buffer is for.
        what: String,
        /// Its size in bytes.
        bytes: usize,
    },
    /// Weights that are present and well-formed but hold unusable values (NaN or infinite
    /// norm weights, data failing its checksum).
    Corrupt(String),
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Format(e) => write!(f, "bad model file: {e}"),
            RuntimeError::Unsupported(s) => write!(f, "unsupported: {s}"),
            RuntimeError::InvalidRequest(s) => write!(f, "invalid request: {s}"),
            RuntimeError::Tokenizer(s) => write!(f, "tokenizer: {s}"),
            RuntimeError::Cancelled => write!(f, "cancelled"),
            RuntimeError::OutOfMemory { what, bytes } => write!(
                f,
                "out of memory: {what} needs {:.1} MiB, which cannot be allocated",
                *bytes as f64 / (1u64 << 20) as f64
            ),
            RuntimeError::Corrupt(s) => write!(f, "corrupt model file: {s}"),
        }
    }
}

impl std::error::Error for RuntimeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RuntimeError::Format(e) => Some(e),
            _ => None,
        }
    }
}

impl From<FormatError> for RuntimeError {
    fn from(e: FormatError) -> Self {
        RuntimeError::Format(e)
    }
}
