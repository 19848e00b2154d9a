//! Safetensors reading, by hand: the header (u64 LE length + JSON) of each shard is checked in
//! full (dtype known, shape product × dtype size equals the byte range, ranges inside the file
//! and not overlapping), and tensors are read one at a time with plain positioned reads.

use crate::error::{ConvertError, Result, io_err};
use serde_json::Value;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Largest header we accept (the format's own reference implementation uses 100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The file name of an unsharded checkpoint.
pub(crate) const SINGLE_FILE: &str = "model.safetensors";
/// The file name of a sharded checkpoint's index.
pub(crate) const INDEX_FILE: &str = "model.safetensors.index.json";

/// A safetensors element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dtype {
    Bool,
    U8,
    I8,
    F8E4M3,
    F8E5M2,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    I64,
    U64,
    F64,
}

impl Dtype {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "BOOL" => Dtype::Bool,
            "U8" => Dtype::U8,
            "I8" => Dtype::I8,
            "F8_E4M3" => Dtype::F8E4M3,
            "F8_E5M2" => Dtype::F8E5M2,
            "I16" => Dtype::I16,
            "U16" => Dtype::U16,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "I32" => Dtype::I32,
            "U32" => Dtype::U32,
            "F32" => Dtype::F32,
            "I64" => Dtype::I64,
            "U64" => Dtype::U64,
            "F64" => Dtype::F64,
            _ => return None,
        })
    }

    /// The name as safetensors spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::F8E5M2 => "F8_E5M2",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
            Dtype::F64 => "F64",
        }
    }

    fn size(self) -> u64 {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 | Dtype::F8E4M3 | Dtype::F8E5M2 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }
}

/// One tensor of a safetensors file, its range already checked against the file.
#[derive(Debug, Clone)]
pub(crate) struct TensorEntry {
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<u64>,
    /// Absolute file offset of the first byte.
    pub(crate) start: u64,
    /// Length in bytes (= product(shape) × dtype size).
    pub(crate) len_bytes: u64,
}

/// One safetensors file: its path and checked header.
#[derive(Debug)]
pub(crate) struct SafetensorsFile {
    pub(crate) path: PathBuf,
    pub(crate) tensors: HashMap<String, TensorEntry>,
}

impl SafetensorsFile {
    /// Open `path` and check its header.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut f = File::open(path).map_err(io_err(path))?;
        let file_len = f.metadata().map_err(io_err(path))?.len();
        let bad = |reason: String| ConvertError::BadSafetensors {
            path: path.to_path_buf(),
            reason,
        };
        if file_len < 8 {
            return Err(bad(format!(
                "file is {file_len} bytes, too short for the 8-byte header length"
            )));
        }
        let mut len_buf = [0u8; 8];
        f.read_exact(&mut len_buf).map_err(io_err(path))?;
        let header_len = u64::from_le_bytes(len_buf);
        check_header_len(header_len, file_len).map_err(bad)?;
        let mut header = vec![0u8; header_len as usize];
        f.read_exact(&mut header).map_err(io_err(path))?;
        let tensors = parse_header(&header, header_len, file_len).map_err(bad)?;
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            tensors,
        })
    }

    /// Read the raw little-endian bytes of `entry`.
    pub(crate) fn read_bytes(&self, entry: &TensorEntry) -> Result<Vec<u8>> {
        let mut f = File::open(&self.path).map_err(io_err(&self.path))?;
        f.seek(SeekFrom::Start(entry.start))
            .map_err(io_err(&self.path))?;
        let len = usize::try_from(entry.len_bytes).map_err(|_| ConvertError::BadSafetensors {
            path: self.path.clone(),
            reason: format!("tensor of {} bytes does not fit in memory", entry.len_bytes),
        })?;
        let mut buf = vec![0u8; len];
        f.read_exact(&mut buf).map_err(io_err(&self.path))?;
        Ok(buf)
    }
}

fn check_header_len(header_len: u64, file_len: u64) -> std::result::Result<(), String> {
    if header_len > MAX_HEADER_BYTES || header_len > file_len - 8 {
        return Err(format!(
            "header length {header_len} runs past the end of the {file_len}-byte file"
        ));
    }
    Ok(())
}

/// The checks `dlm convert` makes of a safetensors file's header, over a whole file held in
/// memory: the number of tensors it declares, or what is wrong (for fuzzing and tests).
pub fn check_safetensors_bytes(file: &[u8]) -> std::result::Result<usize, String> {
    let file_len = file.len() as u64;
    if file_len < 8 {
        return Err(format!("file is {file_len} bytes, too short"));
    }
    let header_len = u64::from_le_bytes(file[..8].try_into().map_err(|_| "short")?);
    check_header_len(header_len, file_len)?;
    let header = &file[8..8 + header_len as usize];
    parse_header(header, header_len, file_len).map(|t| t.len())
}

/// Parse and check a header's JSON against a file of `file_len` bytes.
fn parse_header(
    header: &[u8],
    header_len: u64,
    file_len: u64,
) -> std::result::Result<HashMap<String, TensorEntry>, String> {
    let json: Value =
        serde_json::from_slice(header).map_err(|e| format!("header is not valid JSON: {e}"))?;
    let obj = json
        .as_object()
        .ok_or("header JSON is not an object".to_string())?;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    let mut tensors = HashMap::with_capacity(obj.len());
    let mut ranges: Vec<(u64, u64, &str)> = Vec::with_capacity(obj.len());
    for (name, v) in obj {
        if name == "__metadata__" {
            continue;
        }
        let t = v
            .as_object()
            .ok_or(format!("entry {name:?} is not an object"))?;
        let dtype_s = t
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or(format!("tensor {name:?} has no dtype string"))?;
        let dtype = Dtype::parse(dtype_s)
            .ok_or(format!("tensor {name:?} has unknown dtype {dtype_s:?}"))?;
        let shape = t
            .get("shape")
            .and_then(Value::as_array)
            .ok_or(format!("tensor {name:?} has no shape array"))?
            .iter()
            .map(Value::as_u64)
            .collect::<Option<Vec<u64>>>()
            .ok_or(format!("tensor {name:?} has a non-integer dimension"))?;
        let offs = t
            .get("data_offsets")
            .and_then(Value::as_array)
            .ok_or(format!("tensor {name:?} has no data_offsets"))?;
        let (begin, end) = match offs.as_slice() {
            [a, b] => (
                a.as_u64()
                    .ok_or(format!("tensor {name:?} has a bad data offset"))?,
                b.as_u64()
                    .ok_or(format!("tensor {name:?} has a bad data offset"))?,
            ),
            _ => return Err(format!("tensor {name:?}: data_offsets must have 2 entries")),
        };
        if begin > end || end > data_len {
            return Err(format!(
                "tensor {name:?}: data offsets [{begin}, {end}] out of range of the {data_len}-byte data section"
            ));
        }
        let n_bytes = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .ok_or(format!("tensor {name:?}: shape {shape:?} overflows"))?;
        if n_bytes != end - begin {
            return Err(format!(
                "tensor {name:?}: {} × {shape:?} needs {n_bytes} bytes but its range holds {}",
                dtype.name(),
                end - begin
            ));
        }
        ranges.push((begin, end, name.as_str()));
        tensors.insert(
            name.clone(),
            TensorEntry {
                dtype,
                shape,
                start: data_start + begin,
                len_bytes: n_bytes,
            },
        );
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(format!("tensors {:?} and {:?} overlap", w[0].2, w[1].2));
        }
    }
    Ok(tensors)
}

/// All safetensors files of a checkpoint folder, and which file holds each tensor.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    /// The index file, or the single file: what errors about missing tensors name.
    pub(crate) source: PathBuf,
    files: Vec<SafetensorsFile>,
    /// Tensor name → index into `files`.
    location: HashMap<String, usize>,
}

impl Checkpoint {
    /// Open `dir`'s `model.safetensors.index.json` and every shard it names, or else its
    /// `model.safetensors`.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join(INDEX_FILE);
        if index_path.is_file() {
            return Self::open_sharded(dir, &index_path);
        }
        let single = dir.join(SINGLE_FILE);
        if !single.is_file() {
            return Err(ConvertError::MissingFile {
                path: single,
                needed_for: "the weights (no model.safetensors.index.json either)",
            });
        }
        let file = SafetensorsFile::open(&single)?;
        let location = file.tensors.keys().map(|k| (k.clone(), 0)).collect();
        Ok(Checkpoint {
            source: single,
            files: vec![file],
            location,
        })
    }

    fn open_sharded(dir: &Path, index_path: &Path) -> Result<Self> {
        let json = crate::read_json(index_path)?;
        let map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| ConvertError::BadSafetensors {
                path: index_path.to_path_buf(),
                reason: "index has no weight_map object".into(),
            })?;
        let mut files: Vec<SafetensorsFile> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut location = HashMap::with_capacity(map.len());
        for (tensor, shard) in map {
            let shard = shard.as_str().ok_or_else(|| ConvertError::BadSafetensors {
                path: index_path.to_path_buf(),
                reason: format!("weight_map entry for {tensor:?} is not a file name"),
            })?;
            if shard.contains(['/', '\\']) || shard == ".." {
                return Err(ConvertError::BadSafetensors {
                    path: index_path.to_path_buf(),
                    reason: format!("shard name {shard:?} is not a plain file name"),
                });
            }
            let idx = match by_name.get(shard) {
                Some(&i) => i,
                None => {
                    let path = dir.join(shard);
                    if !path.is_file() {
                        return Err(ConvertError::MissingFile {
                            path,
                            needed_for: "a shard named by model.safetensors.index.json",
                        });
                    }
                    files.push(SafetensorsFile::open(&path)?);
                    by_name.insert(shard.to_string(), files.len() - 1);
                    files.len() - 1
                }
            };
            if !files[idx].tensors.contains_key(tensor) {
                return Err(ConvertError::MissingTensor {
                    path: files[idx].path.clone(),
                    tensor: tensor.clone(),
                });
            }
            location.insert(tensor.clone(), idx);
        }
        Ok(Checkpoint {
            source: index_path.to_path_buf(),
            files,
            location,
        })
    }

    /// Names of every tensor in the checkpoint.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.location.keys().map(String::as_str)
    }

    /// The file and entry of `name`, or `MissingTensor`.
    pub(crate) fn get(&self, name: &str) -> Result<(&SafetensorsFile, &TensorEntry)> {
        let file = self
            .location
            .get(name)
            .map(|&i| &self.files[i])
            .ok_or_else(|| ConvertError::MissingTensor {
                path: self.source.clone(),
                tensor: name.to_string(),
            })?;
        let entry = file
            .tensors
            .get(name)
            .ok_or_else(|| ConvertError::MissingTensor {
                path: file.path.clone(),
                tensor: name.to_string(),
            })?;
        Ok((file, entry))
    }
}

/// Decode raw little-endian `bytes` of `dtype` to f32; `None` for non-float dtypes.
pub(crate) fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_check(json: &str, data_len: u64) -> std::result::Result<usize, String> {
        let h = json.as_bytes();
        parse_header(h, h.len() as u64, 8 + h.len() as u64 + data_len).map(|m| m.len())
    }

    #[test]
    fn headers_are_checked() {
        let ok = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]}}"#;
        assert_eq!(header_check(ok, 12), Ok(1));
        assert!(header_check(ok, 11).unwrap_err().contains("out of range"));
        let short = r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,12]}}"#;
        assert!(
            header_check(short, 24)
                .unwrap_err()
                .contains("needs 24 bytes")
        );
        let unk = r#"{"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}}"#;
        assert!(header_check(unk, 1).unwrap_err().contains("unknown dtype"));
        let overlap = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#;
        assert!(header_check(overlap, 6).unwrap_err().contains("overlap"));
        let huge = r#"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#;
        assert!(header_check(huge, 0).unwrap_err().contains("overflows"));
        assert!(
            header_check("[1,2]", 0)
                .unwrap_err()
                .contains("not an object")
        );
        assert!(
            header_check("{nope", 0)
                .unwrap_err()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn float_decoding() {
        assert_eq!(to_f32(Dtype::BF16, &[0x80, 0x3f]), Some(vec![1.0]));
        assert_eq!(to_f32(Dtype::F16, &[0x00, 0x3c]), Some(vec![1.0]));
        assert_eq!(to_f32(Dtype::F32, &1.5f32.to_le_bytes()), Some(vec![1.5]));
        assert_eq!(to_f32(Dtype::I64, &[0; 8]), None);
    }
}
