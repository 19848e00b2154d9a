//! Zero-copy reader: parses the header, metadata and tensor directory of a `.dlm` file held in
//! memory (usually a memory map) and hands out byte views of tensors. Every count, offset, shape
//! and alignment is checked before use; no input makes it panic or allocate more than the input
//! can hold.

use crate::checksum::dlmh64;
use crate::layout::{self, header, tag};
use crate::mmap::MappedFile;
use crate::{FormatError, MetaValue, QuantType};
use std::collections::HashSet;
use std::path::Path;

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name (ours, not Hugging Face's: `blk.0.wq`).
    pub name: String,
    /// Storage type.
    pub quant: QuantType,
    /// Row-major shape; the last dimension is the row.
    pub shape: Vec<u64>,
    /// Absolute offset of the data in the file.
    pub offset: u64,
    /// Length of the data in bytes.
    pub len_bytes: u64,
    /// Checksum of the data bytes (`dlmh64`, see SPEC.md).
    pub checksum: u64,
}

impl TensorInfo {
    /// Number of elements (the product of the shape; 1 for a scalar). Cannot overflow for a
    /// parsed tensor, whose byte size was checked.
    pub fn n_elements(&self) -> u64 {
        self.shape
            .iter()
            .fold(1u64, |acc, &d| acc.saturating_mul(d))
    }
}

/// A parsed `.dlm` header: metadata and tensor directory, owned; tensor data stays in the
/// caller's bytes and is borrowed on demand.
#[derive(Debug, Clone)]
pub struct DlmFile {
    /// Format version of the file.
    pub version: u32,
    /// Metadata in file order.
    pub meta: Vec<(String, MetaValue)>,
    /// Tensor directory in file order.
    pub tensors: Vec<TensorInfo>,
}

/// A bounded read position inside one section of the file.
struct Cursor<'a> {
    /// The whole file.
    bytes: &'a [u8],
    /// Next byte to read.
    pos: usize,
    /// End of the section (exclusive, `<= bytes.len()`).
    end: usize,
    /// Section name for errors.
    section: &'static str,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// The error for `what`, starting at `at`, running past the section end.
    fn overrun(&self, what: &'static str, at: usize) -> FormatError {
        if self.end == self.bytes.len() {
            FormatError::Truncated {
                what,
                offset: at as u64,
            }
        } else {
            FormatError::Invalid {
                what: format!("{what} runs past the end of the {} section", self.section),
                offset: at as u64,
            }
        }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(self.overrun(what, self.pos));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A u32-length-prefixed UTF-8 string.
    fn string(&mut self, what: &'static str) -> Result<String, FormatError> {
        let at = self.pos;
        let len = self.u32(what)? as usize;
        if len > self.remaining() {
            return Err(self.overrun(what, at));
        }
        let raw = self.take(len, what)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(FormatError::Invalid {
                what: format!("{what} is not UTF-8 ({e})"),
                offset: at as u64,
            }),
        }
    }

    /// A u64 element count of an array whose elements take at least `elem_bytes` each, checked
    /// against the bytes left in the section.
    fn count(&mut self, what: &'static str, elem_bytes: u64) -> Result<usize, FormatError> {
        let at = self.pos;
        let n = self.u64(what)?;
        let rem = self.remaining();
        match n.checked_mul(elem_bytes) {
            Some(need) if need <= rem as u64 => Ok(n as usize),
            _ => Err(FormatError::Invalid {
                what: format!(
                    "{what} of {n} elements cannot fit in the {rem} bytes left in the {} section",
                    self.section
                ),
                offset: at as u64,
            }),
        }
    }
}

/// Little-endian u32 at `at` of a slice known to be long enough.
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Little-endian u64 at `at` of a slice known to be long enough.
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decode `raw` (a whole number of 4-byte little-endian words) with `f`.
fn words<T>(raw: &[u8], f: fn([u8; 4]) -> T) -> Vec<T> {
    raw.chunks_exact(4)
        .map(|c| f([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// One metadata value after its key.
fn read_value(cur: &mut Cursor<'_>, key: &str) -> Result<MetaValue, FormatError> {
    let t = cur.u32("metadata type tag")?;
    Ok(match t {
        tag::U32 => MetaValue::U32(cur.u32("u32 value")?),
        tag::I32 => MetaValue::I32(cur.array("i32 value").map(i32::from_le_bytes)?),
        tag::U64 => MetaValue::U64(cur.u64("u64 value")?),
        tag::F32 => MetaValue::F32(cur.array("f32 value").map(f32::from_le_bytes)?),
        tag::F64 => MetaValue::F64(cur.array("f64 value").map(f64::from_le_bytes)?),
        tag::BOOL => {
            let at = cur.pos;
            match cur.u8("bool value")? {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => {
                    return Err(FormatError::Invalid {
                        what: format!("bool value {b} of key {key:?} is neither 0 nor 1"),
                        offset: at as u64,
                    });
                }
            }
        }
        tag::STR => MetaValue::Str(cur.string("string value")?),
        tag::ARR_U32 | tag::ARR_I32 | tag::ARR_F32 => {
            let n = cur.count("array", 4)?;
            let raw = cur.take(n * 4, "array elements")?;
            match t {
                tag::ARR_U32 => MetaValue::ArrU32(words(raw, u32::from_le_bytes)),
                tag::ARR_I32 => MetaValue::ArrI32(words(raw, i32::from_le_bytes)),
                _ => MetaValue::ArrF32(words(raw, f32::from_le_bytes)),
            }
        }
        tag::ARR_STR => {
            // Each element takes at least its 4-byte length, so `n` is bounded by the input.
            let n = cur.count("string array", 4)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(cur.string("string array element")?);
            }
            MetaValue::ArrStr(v)
        }
        _ => {
            return Err(FormatError::UnknownMetaType {
                key: key.to_owned(),
                tag: t,
            });
        }
    })
}

/// Why `quant.tensor_bytes(shape)` failed.
fn shape_fault(quant: QuantType, shape: &[u64]) -> String {
    match shape.last() {
        Some(&row) if !row.is_multiple_of(quant.block_len() as u64) => format!(
            "row length {row} is not a multiple of the {quant} block of {} elements",
            quant.block_len()
        ),
        _ => format!("the size of shape {shape:?} overflows u64"),
    }
}

impl DlmFile {
    /// Parse and validate the header, metadata and directory of `bytes` (the whole file).
    /// Tensor checksums are not verified here (see [`DlmFile::verify_checksums`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < 4 {
            return Err(FormatError::Truncated {
                what: "magic",
                offset: 0,
            });
        }
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != layout::MAGIC {
            return Err(FormatError::BadMagic(magic));
        }
        if (bytes.len() as u64) < layout::HEADER_BYTES {
            return Err(FormatError::Truncated {
                what: "header",
                offset: 0,
            });
        }
        let version = le_u32(bytes, header::VERSION);
        if version == 0 || version > layout::VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let align32 = le_u32(bytes, header::ALIGNMENT);
        if !align32.is_power_of_two()
            || !(layout::MIN_ALIGNMENT..=layout::MAX_ALIGNMENT).contains(&align32)
        {
            return Err(invalid(
                format!("alignment {align32} is not a power of two in [64, 1 MiB]"),
                header::ALIGNMENT,
            ));
        }
        let align = u64::from(align32);
        let reserved = le_u32(bytes, header::RESERVED);
        if reserved != 0 {
            return Err(invalid(
                format!("reserved header field is {reserved}, not 0"),
                header::RESERVED,
            ));
        }
        let n_meta = le_u64(bytes, header::N_META);
        let n_tensors = le_u64(bytes, header::N_TENSORS);
        let meta_off = le_u64(bytes, header::META_OFFSET);
        let dir_off = le_u64(bytes, header::DIR_OFFSET);
        let data_off = le_u64(bytes, header::DATA_OFFSET);
        let file_bytes = le_u64(bytes, header::FILE_BYTES);

        let len = bytes.len() as u64;
        if file_bytes > len {
            return Err(FormatError::Truncated {
                what: "file",
                offset: len,
            });
        }
        if file_bytes < len {
            return Err(invalid(
                format!(
                    "{} bytes after the end the header declares",
                    len - file_bytes
                ),
                file_bytes as usize,
            ));
        }
        if meta_off != layout::HEADER_BYTES {
            return Err(invalid(
                format!("metadata offset {meta_off} is not {}", layout::HEADER_BYTES),
                header::META_OFFSET,
            ));
        }
        if !(meta_off <= dir_off && dir_off <= data_off && data_off <= file_bytes) {
            return Err(invalid(
                format!(
                    "section offsets out of order or past the end: metadata {meta_off}, \
                     directory {dir_off}, data {data_off}, file size {file_bytes}"
                ),
                header::DIR_OFFSET,
            ));
        }
        if !data_off.is_multiple_of(align) {
            return Err(invalid(
                format!("data offset {data_off} is not aligned to {align}"),
                header::DATA_OFFSET,
            ));
        }
        // Counts against the room their sections have, before anything is allocated.
        let meta_room = dir_off - meta_off;
        if n_meta > meta_room / layout::MIN_META_ENTRY_BYTES {
            return Err(invalid(
                format!("{n_meta} metadata entries cannot fit in {meta_room} bytes"),
                header::N_META,
            ));
        }
        let dir_room = data_off - dir_off;
        if n_tensors > dir_room / layout::MIN_DIR_ENTRY_BYTES {
            return Err(invalid(
                format!("{n_tensors} directory entries cannot fit in {dir_room} bytes"),
                header::N_TENSORS,
            ));
        }
        // Every offset is now <= bytes.len(), so the casts below are lossless.
        let meta = read_meta(bytes, meta_off as usize, dir_off as usize, n_meta as usize)?;
        let tensors = read_directory(
            bytes,
            version,
            dir_off as usize,
            data_off,
            file_bytes,
            align,
            n_tensors as usize,
        )?;
        check_overlaps(&tensors)?;
        Ok(DlmFile {
            version,
            meta,
            tensors,
        })
    }

    /// Map the file at `path` read-only and parse it; keep the map alive as long as tensor
    /// bytes are borrowed from it.
    pub fn open_mapped(path: impl AsRef<Path>) -> Result<(MappedFile, DlmFile), FormatError> {
        let map = MappedFile::open(path)?;
        let file = DlmFile::parse(map.bytes())?;
        Ok((map, file))
    }

    /// The value of metadata `key`, if present.
    pub fn meta_get(&self, key: &str) -> Option<&MetaValue> {
        self.meta.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A required key's value, picked by `pick` or `WrongKeyType`.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        pick: fn(&'a MetaValue) -> Option<T>,
    ) -> Result<T, FormatError> {
        let v = self
            .meta_get(key)
            .ok_or_else(|| FormatError::MissingKey(key.to_owned()))?;
        pick(v).ok_or_else(|| FormatError::WrongKeyType {
            key: key.to_owned(),
            expected,
        })
    }

    /// An optional key's value, `default` when absent, `WrongKeyType` when of another type.
    fn typed_or<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        pick: fn(&'a MetaValue) -> Option<T>,
        default: T,
    ) -> Result<T, FormatError> {
        match self.meta_get(key) {
            None => Ok(default),
            Some(v) => pick(v).ok_or_else(|| FormatError::WrongKeyType {
                key: key.to_owned(),
                expected,
            }),
        }
    }

    /// Required u32 key.
    pub fn get_u32(&self, key: &str) -> Result<u32, FormatError> {
        self.typed(key, "u32", pick_u32)
    }

    /// Optional u32 key.
    pub fn get_u32_or(&self, key: &str, default: u32) -> Result<u32, FormatError> {
        self.typed_or(key, "u32", pick_u32, default)
    }

    /// Required u64 key.
    pub fn get_u64(&self, key: &str) -> Result<u64, FormatError> {
        self.typed(key, "u64", pick_u64)
    }

    /// Optional u64 key.
    pub fn get_u64_or(&self, key: &str, default: u64) -> Result<u64, FormatError> {
        self.typed_or(key, "u64", pick_u64, default)
    }

    /// Required f32 key.
    pub fn get_f32(&self, key: &str) -> Result<f32, FormatError> {
        self.typed(key, "f32", pick_f32)
    }

    /// Optional f32 key.
    pub fn get_f32_or(&self, key: &str, default: f32) -> Result<f32, FormatError> {
        self.typed_or(key, "f32", pick_f32, default)
    }

    /// Required bool key.
    pub fn get_bool(&self, key: &str) -> Result<bool, FormatError> {
        self.typed(key, "bool", pick_bool)
    }

    /// Optional bool key.
    pub fn get_bool_or(&self, key: &str, default: bool) -> Result<bool, FormatError> {
        self.typed_or(key, "bool", pick_bool, default)
    }

    /// Required string key.
    pub fn get_str(&self, key: &str) -> Result<&str, FormatError> {
        self.typed(key, "str", pick_str)
    }

    /// Optional string key.
    pub fn get_str_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str, FormatError> {
        self.typed_or(key, "str", pick_str, default)
    }

    /// Required string-array key.
    pub fn get_str_array(&self, key: &str) -> Result<&[String], FormatError> {
        self.typed(key, "[str]", pick_str_array)
    }

    /// Optional string-array key.
    pub fn get_str_array_or<'a>(
        &'a self,
        key: &str,
        default: &'a [String],
    ) -> Result<&'a [String], FormatError> {
        self.typed_or(key, "[str]", pick_str_array, default)
    }

    /// Required u32-array key.
    pub fn get_u32_array(&self, key: &str) -> Result<&[u32], FormatError> {
        self.typed(key, "[u32]", pick_u32_array)
    }

    /// Optional u32-array key.
    pub fn get_u32_array_or<'a>(
        &'a self,
        key: &str,
        default: &'a [u32],
    ) -> Result<&'a [u32], FormatError> {
        self.typed_or(key, "[u32]", pick_u32_array, default)
    }

    /// The directory entry named `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The directory entry named `name`, or `MissingTensor`.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo, FormatError> {
        self.tensor(name)
            .ok_or_else(|| FormatError::MissingTensor(name.to_owned()))
    }

    /// The data of `info` inside `bytes`, the file this header was parsed from.
    ///
    /// # Panics
    /// When `info`'s range lies outside `bytes`, which can only happen when `bytes` or `info`
    /// come from another file (a parsed directory's ranges are always in bounds).
    pub fn tensor_bytes<'a>(&self, bytes: &'a [u8], info: &TensorInfo) -> &'a [u8] {
        match range_of(bytes, info) {
            Some(r) => r,
            None => panic!(
                "tensor {:?} [{}, +{}) is outside the {} bytes given: bytes and header are from \
                 different files",
                info.name,
                info.offset,
                info.len_bytes,
                bytes.len()
            ),
        }
    }

    /// The data of tensor `name` inside `bytes`, or `MissingTensor`.
    pub fn tensor_data<'a>(&self, bytes: &'a [u8], name: &str) -> Result<&'a [u8], FormatError> {
        let info = self.require_tensor(name)?;
        range_of(bytes, info).ok_or(FormatError::Truncated {
            what: "tensor data",
            offset: info.offset,
        })
    }

    /// Check one tensor's data against its stored checksum.
    pub fn verify_tensor(&self, bytes: &[u8], info: &TensorInfo) -> Result<(), FormatError> {
        let data = range_of(bytes, info).ok_or(FormatError::Truncated {
            what: "tensor data",
            offset: info.offset,
        })?;
        if dlmh64(data) != info.checksum {
            return Err(FormatError::Checksum {
                tensor: info.name.clone(),
            });
        }
        Ok(())
    }

    /// Check every tensor's data against its stored checksum; the error names the first
    /// corrupt tensor in directory order.
    pub fn verify_checksums(&self, bytes: &[u8]) -> Result<(), FormatError> {
        self.tensors
            .iter()
            .try_for_each(|t| self.verify_tensor(bytes, t))
    }
}

fn pick_u32(v: &MetaValue) -> Option<u32> {
    match v {
        MetaValue::U32(x) => Some(*x),
        _ => None,
    }
}

fn pick_u64(v: &MetaValue) -> Option<u64> {
    match v {
        MetaValue::U64(x) => Some(*x),
        _ => None,
    }
}

fn pick_f32(v: &MetaValue) -> Option<f32> {
    match v {
        MetaValue::F32(x) => Some(*x),
        _ => None,
    }
}

fn pick_bool(v: &MetaValue) -> Option<bool> {
    match v {
        MetaValue::Bool(x) => Some(*x),
        _ => None,
    }
}

fn pick_str(v: &MetaValue) -> Option<&str> {
    match v {
        MetaValue::Str(x) => Some(x),
        _ => None,
    }
}

fn pick_str_array(v: &MetaValue) -> Option<&[String]> {
    match v {
        MetaValue::ArrStr(x) => Some(x),
        _ => None,
    }
}

fn pick_u32_array(v: &MetaValue) -> Option<&[u32]> {
    match v {
        MetaValue::ArrU32(x) => Some(x),
        _ => None,
    }
}

/// `Invalid` at a header or section offset.
fn invalid(what: String, offset: usize) -> FormatError {
    FormatError::Invalid {
        what,
        offset: offset as u64,
    }
}

/// The bytes of `info` in `bytes`, if in bounds.
fn range_of<'a>(bytes: &'a [u8], info: &TensorInfo) -> Option<&'a [u8]> {
    let start = usize::try_from(info.offset).ok()?;
    let len = usize::try_from(info.len_bytes).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

/// The metadata section `[start, end)` holding `n` entries, which must fill it exactly.
fn read_meta(
    bytes: &[u8],
    start: usize,
    end: usize,
    n: usize,
) -> Result<Vec<(String, MetaValue)>, FormatError> {
    let mut cur = Cursor {
        bytes,
        pos: start,
        end,
        section: "metadata",
    };
    let mut meta = Vec::with_capacity(n);
    let mut seen = HashSet::with_capacity(n);
    for _ in 0..n {
        let at = cur.pos as u64;
        let key = cur.string("metadata key")?;
        if key.is_empty() {
            return Err(FormatError::Invalid {
                what: "empty metadata key".into(),
                offset: at,
            });
        }
        if !seen.insert(key.clone()) {
            return Err(FormatError::Invalid {
                what: format!("duplicate metadata key {key:?}"),
                offset: at,
            });
        }
        let value = read_value(&mut cur, &key)?;
        meta.push((key, value));
    }
    if cur.pos != end {
        return Err(invalid(
            format!(
                "{} unused bytes after the last metadata entry",
                end - cur.pos
            ),
            cur.pos,
        ));
    }
    Ok(meta)
}

/// The directory section from `start` up to `data_off`, holding `n` entries; quant ids are read
/// as format `version` defines them.
fn read_directory(
    bytes: &[u8],
    version: u32,
    start: usize,
    data_off: u64,
    file_bytes: u64,
    align: u64,
    n: usize,
) -> Result<Vec<TensorInfo>, FormatError> {
    let mut cur = Cursor {
        bytes,
        pos: start,
        end: data_off as usize,
        section: "directory",
    };
    let mut tensors = Vec::with_capacity(n);
    let mut seen = HashSet::with_capacity(n);
    for _ in 0..n {
        let at = cur.pos as u64;
        let name = cur.string("tensor name")?;
        if name.is_empty() {
            return Err(FormatError::Invalid {
                what: "empty tensor name".into(),
                offset: at,
            });
        }
        if !seen.insert(name.clone()) {
            return Err(FormatError::Invalid {
                what: format!("duplicate tensor name {name:?}"),
                offset: at,
            });
        }
        let quant = QuantType::from_file_id(version, cur.u32("quant type id")?)?;
        let n_dims = cur.u32("dimension count")?;
        if n_dims as usize > layout::MAX_DIMS {
            return Err(FormatError::BadShape {
                tensor: name,
                reason: format!("{n_dims} dimensions, at most {}", layout::MAX_DIMS),
            });
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            shape.push(cur.u64("dimension")?);
        }
        let offset = cur.u64("tensor offset")?;
        let len_bytes = cur.u64("tensor byte length")?;
        let checksum = cur.u64("tensor checksum")?;

        let Some(expected) = quant.tensor_bytes(&shape) else {
            let reason = shape_fault(quant, &shape);
            return Err(FormatError::BadShape {
                tensor: name,
                reason,
            });
        };
        if len_bytes != expected {
            return Err(FormatError::BadShape {
                tensor: name,
                reason: format!(
                    "len_bytes is {len_bytes} but a {quant} tensor of shape {shape:?} takes \
                     {expected}"
                ),
            });
        }
        if !offset.is_multiple_of(align) {
            return Err(FormatError::Misaligned {
                tensor: name,
                offset,
                align,
            });
        }
        if offset < data_off {
            return Err(FormatError::Invalid {
                what: format!(
                    "tensor {name:?} data at {offset} starts before the data section at \
                     {data_off}"
                ),
                offset: at,
            });
        }
        if offset
            .checked_add(len_bytes)
            .is_none_or(|end| end > file_bytes)
        {
            return Err(FormatError::Invalid {
                what: format!(
                    "tensor {name:?} data [{offset}, +{len_bytes}) runs past the end of the \
                     file ({file_bytes} bytes)"
                ),
                offset: at,
            });
        }
        tensors.push(TensorInfo {
            name,
            quant,
            shape,
            offset,
            len_bytes,
            checksum,
        });
    }
    Ok(tensors)
}

/// Reject two non-empty tensors whose byte ranges intersect.
fn check_overlaps(tensors: &[TensorInfo]) -> Result<(), FormatError> {
    let mut order: Vec<&TensorInfo> = tensors.iter().filter(|t| t.len_bytes > 0).collect();
    order.sort_by_key(|t| t.offset);
    for w in order.windows(2) {
        // Ranges were checked in bounds, so the sum cannot overflow.
        if w[1].offset < w[0].offset + w[0].len_bytes {
            return Err(FormatError::Overlap {
                first: w[0].name.clone(),
                second: w[1].name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(bytes: &[u8], end: usize) -> Cursor<'_> {
        Cursor {
            bytes,
            pos: 0,
            end,
            section: "test",
        }
    }

    #[test]
    fn overrun_is_truncation_at_file_end_and_invalid_inside() {
        let b = [1u8, 0, 0, 0, 7, 7];
        let mut c = cursor(&b, 3);
        assert!(matches!(
            c.u32("x"),
            Err(FormatError::Invalid { offset: 0, .. })
        ));
        let mut c = cursor(&b[..3], 3);
        assert!(matches!(
            c.u32("x"),
            Err(FormatError::Truncated {
                what: "x",
                offset: 0
            })
        ));
        let mut c = cursor(&b, 6);
        assert_eq!(c.u32("x").unwrap(), 1);
        assert_eq!(c.remaining(), 2);
    }

    #[test]
    fn counts_are_checked_against_remaining_bytes_with_overflow() {
        let mut b = u64::MAX.to_le_bytes().to_vec();
        b.extend_from_slice(&[0; 16]);
        let mut c = cursor(&b, b.len());
        assert!(matches!(
            c.count("arr", 4),
            Err(FormatError::Invalid { .. })
        ));
        let mut b = 4u64.to_le_bytes().to_vec();
        b.extend_from_slice(&[0; 16]);
        assert_eq!(cursor(&b, b.len()).count("arr", 4).unwrap(), 4);
        assert!(cursor(&b, b.len()).count("arr", 5).is_err());
    }

    #[test]
    fn strings_check_length_and_utf8() {
        let mut b = 2u32.to_le_bytes().to_vec();
        b.extend_from_slice(b"hi");
        assert_eq!(cursor(&b, b.len()).string("s").unwrap(), "hi");
        assert!(cursor(&b, b.len() - 1).string("s").is_err());
        b[5] = 0xC0;
        assert!(matches!(
            cursor(&b, b.len()).string("s"),
            Err(FormatError::Invalid { what, offset: 0 }) if what.contains("UTF-8")
        ));
    }

    #[test]
    fn shape_faults_are_explained() {
        assert!(shape_fault(QuantType::Q8_0, &[2, 33]).contains("multiple"));
        assert!(shape_fault(QuantType::F32, &[u64::MAX, 2]).contains("overflows"));
    }
}
