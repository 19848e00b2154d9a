//! The one error type of the convert crate: every fault names the file (and tensor or key) where
//! it was found.

use dlm_formats::{FormatError, QuantType};
use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong turning a Hugging Face folder into a `.dlm` file.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConvertError {
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file the checkpoint needs is absent (a shard named by the index, `config.json`, ...).
    MissingFile {
        /// The file that should exist.
        path: PathBuf,
        /// Why it is needed.
        needed_for: &'static str,
    },
    /// A JSON file does not parse.
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        source: serde_json::Error,
    },
    /// A safetensors file's header is corrupt: bad length, bad JSON, offsets out of range, a
    /// byte range that does not match dtype and shape.
    BadSafetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor is stored in a dtype that cannot be converted (only BF16, F16 and F32 can).
    UnsupportedDtype {
        /// The file holding it.
        path: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
        /// The safetensors dtype string.
        dtype: String,
    },
    /// `config.json` declares an architecture this converter does not know.
    UnknownArchitecture {
        /// The config file.
        path: PathBuf,
        /// What it declared (`architectures[0]` or `model_type`).
        architecture: String,
    },
    /// A config key that is needed is absent.
    MissingConfigKey {
        /// The config file.
        path: PathBuf,
        /// The key (or keys, `a|b`) looked for.
        key: String,
    },
    /// A config key holds a value that is the wrong type, out of range, or inconsistent.
    BadConfigValue {
        /// The config file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint uses a feature the runtime does not implement (ALiBi, sliding window...).
    Unsupported {
        /// The file that declares it.
        path: PathBuf,
        /// The feature.
        what: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    MissingTensor {
        /// The index or safetensors file that should list it.
        path: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
    },
    /// A tensor in the checkpoint that the model does not use (so its meaning would be lost).
    UnexpectedTensor {
        /// The file holding it.
        path: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
    },
    /// A tensor's shape does not match what the config implies.
    ShapeMismatch {
        /// The file holding it.
        path: PathBuf,
        /// The Hugging Face tensor name.
        tensor: String,
        /// The shape the config implies.
        expected: Vec<u64>,
        /// The shape in the file.
        found: Vec<u64>,
    },
    /// `tokenizer.json` (or `tokenizer_config.json`) is malformed or uses an unsupported model.
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The output path names one of the input files (writing it would destroy the checkpoint).
    OutputIsInput {
        /// The output path given.
        output: PathBuf,
        /// The input file it names.
        input: PathBuf,
    },
    /// The chat template cannot be rendered or cut into literal pieces.
    ChatTemplate {
        /// The file holding it.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A GGUF file's container is malformed (truncated, absurd counts, bad offsets...).
    BadGguf {
        /// The file.
        path: PathBuf,
        /// Byte offset of the fault.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The quantization policy asks for a type that has no encoder in this build yet.
    QuantUnavailable {
        /// The type.
        quant: QuantType,
    },
    /// A tensor's shape cannot be stored in the chosen type (row not a whole number of blocks).
    BadQuantShape {
        /// The type.
        quant: QuantType,
        /// Our tensor name.
        tensor: String,
        /// Its shape.
        shape: Vec<u64>,
    },
    /// A tensor's values cannot be stored in the chosen type (NaN, overflow of f16...).
    Encode {
        /// Our tensor name.
        tensor: String,
        /// The type.
        quant: QuantType,
        /// The quantizer's error.
        source: FormatError,
    },
    /// A norm weight or bias holds NaN or an infinity (the runtime refuses such a file).
    NonFinite {
        /// The source file.
        path: PathBuf,
        /// Our tensor name.
        tensor: String,
        /// The first bad element.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// A policy name the CLI does not know.
    UnknownPolicy(String),
    /// The `.dlm` writer refused.
    Format {
        /// The output file.
        path: PathBuf,
        /// The writer's error.
        source: FormatError,
    },
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::Io { path, .. } => write!(f, "{}: i/o error", path.display()),
            ConvertError::MissingFile { path, needed_for } => {
                write!(
                    f,
                    "{}: file not found (needed for {needed_for})",
                    path.display()
                )
            }
            ConvertError::Json { path, .. } => write!(f, "{}: invalid JSON", path.display()),
            ConvertError::BadSafetensors { path, reason } => {
                write!(f, "{}: corrupt safetensors file: {reason}", path.display())
            }
            ConvertError::UnsupportedDtype {
                path,
                tensor,
                dtype,
            } => write!(
                f,
                "{}: tensor {tensor:?} has dtype {dtype}, which cannot be converted (BF16, F16, F32 can)",
                path.display()
            ),
            ConvertError::UnknownArchitecture { path, architecture } => write!(
                f,
                "{}: unknown architecture {architecture:?} (supported: LLaDAModelLM, DreamModel)",
                path.display()
            ),
            ConvertError::MissingConfigKey { path, key } => {
                write!(f, "{}: config key {key:?} is missing", path.display())
            }
            ConvertError::BadConfigValue { path, key, reason } => {
                write!(f, "{}: config key {key:?}: {reason}", path.display())
            }
            ConvertError::Unsupported { path, what } => {
                write!(f, "{}: unsupported: {what}", path.display())
            }
            ConvertError::MissingTensor { path, tensor } => {
                write!(f, "{}: tensor {tensor:?} is missing", path.display())
            }
            ConvertError::UnexpectedTensor { path, tensor } => write!(
                f,
                "{}: tensor {tensor:?} is not used by the model (unknown layout?)",
                path.display()
            ),
            ConvertError::ShapeMismatch {
                path,
                tensor,
                expected,
                found,
            } => write!(
                f,
                "{}: tensor {tensor:?} has shape {found:?}, the config implies {expected:?}",
                path.display()
            ),
            ConvertError::Tokenizer { path, reason } => {
                write!(f, "{}: tokenizer: {reason}", path.display())
            }
            ConvertError::OutputIsInput { output, input } => write!(
                f,
                "the output {} is the input file {}; writing it would destroy the checkpoint (choose another -o)",
                output.display(),
                input.display()
            ),
            ConvertError::ChatTemplate { path, reason } => write!(
                f,
                "{}: chat template: {reason} (dlm convert --chat-template FILE gives another template, --no-chat-template none)",
                path.display()
            ),
            ConvertError::QuantUnavailable { quant } => write!(
                f,
                "quant type {quant} has no encoder in this build yet (use f32, f16 or bf16)"
            ),
            ConvertError::BadQuantShape {
                quant,
                tensor,
                shape,
            } => write!(
                f,
                "tensor {tensor:?} of shape {shape:?} cannot be stored as {quant} (row not a whole number of blocks)"
            ),
            ConvertError::Encode { tensor, quant, .. } => {
                write!(f, "tensor {tensor:?} cannot be encoded as {quant}")
            }
            ConvertError::BadGguf {
                path,
                offset,
                reason,
            } => write!(
                f,
                "{}: bad GGUF file at byte {offset}: {reason}",
                path.display()
            ),
            ConvertError::NonFinite {
                path,
                tensor,
                index,
                value,
            } => write!(
                f,
                "{}: tensor {tensor:?} holds {value} at index {index} (a norm weight or bias must be finite)",
                path.display()
            ),
            ConvertError::UnknownPolicy(p) => write!(
                f,
                "unknown quantization policy {p:?} (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, mixed, \
                 keep, or a llama.cpp preset such as Q4_K_M, Q8_0, Q5_K_M)"
            ),
            ConvertError::Format { path, .. } => {
                write!(f, "{}: writing the .dlm file failed", path.display())
            }
        }
    }
}

impl std::error::Error for ConvertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConvertError::Io { source, .. } => Some(source),
            ConvertError::Json { source, .. } => Some(source),
            ConvertError::Format { source, .. } => Some(source),
            ConvertError::Encode { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for this crate's results.
pub type Result<T> = std::result::Result<T, ConvertError>;

/// Wraps an i/o error with the path it happened on.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ConvertError {
    let path = path.into();
    move |source| ConvertError::Io { path, source }
}
