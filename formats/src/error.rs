//! The one error type of the formats crate.

use std::fmt;

/// Everything that can be wrong with a `.dlm` file or a request to write one.
#[derive(Debug)]
#[non_exhaustive]
pub enum FormatError {
    /// Reading or writing the file failed.
    Io(std::io::Error),
    /// The first four bytes are not `DLM\0`.
    BadMagic([u8; 4]),
    /// A format version this build cannot read.
    UnsupportedVersion(u32),
    /// A quant-type id that no build has defined.
    UnknownQuantType(u32),
    /// A quant type of an older format version whose block layout this build no longer reads.
    ObsoleteQuantType {
        /// The type's name in that version.
        name: &'static str,
        /// Its id in that version.
        id: u32,
        /// The format version of the file.
        version: u32,
    },
    /// A metadata value-type tag that this build does not know.
    UnknownMetaType {
        /// The key whose value has the tag.
        key: String,
        /// The tag.
        tag: u32,
    },
    /// The file ends before `what` is complete.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts in the file.
        offset: u64,
    },
    /// A tensor's data does not start on the file's alignment.
    Misaligned {
        /// Tensor name.
        tensor: String,
        /// Its data offset.
        offset: u64,
        /// The alignment required.
        align: u64,
    },
    /// Two tensors' byte ranges overlap.
    Overlap {
        /// The earlier tensor.
        first: String,
        /// The tensor that starts inside it.
        second: String,
    },
    /// A shape whose element count or byte size overflows, or that the type cannot hold.
    BadShape {
        /// Tensor name.
        tensor: String,
        /// Why.
        reason: String,
    },
    /// A string that is not UTF-8, a count that is absurd, a duplicate name: any other
    /// structural fault, with where it was found.
    Invalid {
        /// What is wrong.
        what: String,
        /// File offset where it was found.
        offset: u64,
    },
    /// A metadata key that a reader needs is absent.
    MissingKey(String),
    /// A metadata key holds a value of the wrong type.
    WrongKeyType {
        /// The key.
        key: String,
        /// The type the reader wanted.
        expected: &'static str,
    },
    /// A tensor's bytes do not match its stored checksum.
    Checksum {
        /// Tensor name.
        tensor: String,
    },
    /// A tensor that a reader needs is absent.
    MissingTensor(String),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Io(e) => write!(f, "i/o error: {e}"),
            FormatError::BadMagic(m) => write!(f, "not a .dlm file (magic {m:02x?})"),
            FormatError::UnsupportedVersion(v) => {
                write!(f, "unsupported .dlm format version {v}")
            }
            FormatError::UnknownQuantType(id) => write!(f, "unknown quant type id {id}"),
            FormatError::ObsoleteQuantType { name, id, version } => write!(
                f,
                "this file uses {name} (id {id}) of .dlm format version {version}, whose block \
                 layout changed in version {}; reconvert the model with this dlm (dlm convert)",
                crate::layout::VERSION
            ),
            FormatError::UnknownMetaType { key, tag } => {
                write!(f, "metadata key {key:?} has unknown value type {tag}")
            }
            FormatError::Truncated { what, offset } => {
                write!(
                    f,
                    "file truncated: {what} at offset {offset} runs past the end"
                )
            }
            FormatError::Misaligned {
                tensor,
                offset,
                align,
            } => write!(
                f,
                "tensor {tensor:?} data at offset {offset} is not aligned to {align} bytes"
            ),
            FormatError::Overlap { first, second } => {
                write!(f, "tensors {first:?} and {second:?} overlap")
            }
            FormatError::BadShape { tensor, reason } => {
                write!(f, "tensor {tensor:?} has a bad shape: {reason}")
            }
            FormatError::Invalid { what, offset } => write!(f, "{what} (at offset {offset})"),
            FormatError::MissingKey(k) => write!(f, "metadata key {k:?} is missing"),
            FormatError::WrongKeyType { key, expected } => {
                write!(f, "metadata key {key:?} is not of type {expected}")
            }
            FormatError::Checksum { tensor } => {
                write!(f, "tensor {tensor:?} is corrupt: checksum mismatch")
            }
            FormatError::MissingTensor(t) => write!(f, "tensor {t:?} is missing"),
        }
    }
}

impl std::error::Error for FormatError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FormatError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for FormatError {
    fn from(e: std::io::Error) -> Self {
        FormatError::Io(e)
    }
}
