//! The GGUF container (versions 2 and 3, little-endian) over plain bytes: header, typed
//! key/values, tensor infos and the aligned data section.
//!
//! Every count, length, offset and shape is hostile: counts are checked against the bytes left
//! before anything is allocated, arrays grow only as their elements are really read (and are
//! capped, see [`MAX_ARRAY_LEN`]), sizes are multiplied with overflow checks, and every tensor's
//! byte range must lie inside the file. No input makes this module panic.

use super::ggml::GgmlType;
use std::collections::HashSet;

/// `GGUF` read as a little-endian u32.
const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of the data section when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions of a ggml tensor.
const MAX_DIMS: u32 = 4;
/// Most elements of one metadata array: far above any vocabulary or merge list (a few hundred
/// thousand), far below what would let a hostile count allocate gigabytes of values.
pub const MAX_ARRAY_LEN: u64 = 1 << 22;
/// Arrays of arrays nest at most this deep.
const MAX_DEPTH: u32 = 2;
/// The most entries reserved ahead of reading them: a count only bounded by the file's size
/// (gigabytes of weights) must not reserve memory; vectors grow as entries are really read.
const MAX_RESERVE: usize = 1 << 16;

/// A fault in a GGUF file: what is wrong and where.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufError {
    /// Byte offset in the file where the fault was found.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

type Res<T> = std::result::Result<T, GgufError>;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any integer type (u8 .. i64), widened; u64 values above `i64::MAX` are `U64`.
    Int(i64),
    /// A u64 above `i64::MAX`.
    U64(u64),
    /// f32 or f64, widened.
    Float(f64),
    /// A bool (a byte 0 or 1).
    Bool(bool),
    /// A UTF-8 string.
    Str(String),
    /// An array.
    Arr(Vec<Value>),
}

/// One tensor info.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The ggml name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Its type.
    pub ty: GgmlType,
    /// ggml dims: `ne[0]` is the row length (the reverse of a row-major shape).
    pub ne: Vec<u64>,
    /// Absolute offset of its data in the file.
    pub offset: u64,
    /// Bytes of its data.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The row-major shape (last dimension = row).
    pub fn shape(&self) -> Vec<u64> {
        self.ne.iter().rev().copied().collect()
    }
}

/// A parsed GGUF file (the tensor data stays in the caller's bytes).
#[derive(Debug, Clone)]
pub struct GgufFile {
    /// 2 or 3.
    pub version: u32,
    /// Key/values in file order.
    pub meta: Vec<(String, Value)>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
}

/// Whether `bytes` start like a GGUF file.
pub fn has_magic(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, reason: impl Into<String>) -> GgufError {
        GgufError {
            offset: self.pos as u64,
            reason: reason.into(),
        }
    }
    fn left(&self) -> u64 {
        (self.b.len() - self.pos) as u64
    }
    fn take(&mut self, n: u64, what: &str) -> Res<&'a [u8]> {
        if n > self.left() {
            return Err(self.err(format!(
                "{what}: {n} bytes needed, {} left in the file",
                self.left()
            )));
        }
        let s = &self.b[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Res<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> Res<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> Res<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn string(&mut self, what: &str) -> Res<String> {
        let at = self.pos;
        let n = self.u64(what)?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| GgufError {
            offset: at as u64,
            reason: format!("{what} is not UTF-8"),
        })
    }
    /// A value of GGUF type `ty`.
    fn value(&mut self, ty: u32, depth: u32, what: &str) -> Res<Value> {
        Ok(match ty {
            0 => Value::Int(i64::from(self.arr::<1>(what)?[0])),
            1 => Value::Int(i64::from(self.arr::<1>(what)?[0] as i8)),
            2 => Value::Int(i64::from(u16::from_le_bytes(self.arr(what)?))),
            3 => Value::Int(i64::from(i16::from_le_bytes(self.arr(what)?))),
            4 => Value::Int(i64::from(self.u32(what)?)),
            5 => Value::Int(i64::from(i32::from_le_bytes(self.arr(what)?))),
            6 => Value::Float(f64::from(f32::from_le_bytes(self.arr(what)?))),
            7 => match self.arr::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("{what}: bool byte {b} is neither 0 nor 1"))),
            },
            8 => Value::Str(self.string(what)?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(self.err(format!("{what}: arrays nested deeper than {MAX_DEPTH}")));
                }
                let elem = self.u32(what)?;
                let n = self.u64(what)?;
                let min = min_value_bytes(elem).ok_or_else(|| {
                    self.err(format!("{what}: unknown array element type {elem}"))
                })?;
                if n > MAX_ARRAY_LEN {
                    return Err(self.err(format!(
                        "{what}: {n} array elements, more than the {MAX_ARRAY_LEN} this reader \
                         accepts"
                    )));
                }
                if n.checked_mul(min).is_none_or(|b| b > self.left()) {
                    return Err(self.err(format!(
                        "{what}: {n} array elements cannot fit in the {} bytes left",
                        self.left()
                    )));
                }
                let mut items = Vec::with_capacity((n as usize).min(MAX_RESERVE));
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1, what)?);
                }
                Value::Arr(items)
            }
            10 => {
                let v = self.u64(what)?;
                i64::try_from(v).map_or(Value::U64(v), Value::Int)
            }
            11 => Value::Int(i64::from_le_bytes(self.arr(what)?)),
            12 => Value::Float(f64::from_le_bytes(self.arr(what)?)),
            t => return Err(self.err(format!("{what}: unknown value type {t}"))),
        })
    }
}

/// The fewest bytes a value of GGUF type `ty` takes (`None` for an unknown type).
fn min_value_bytes(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 => 8,
        9 => 12,
        10..=12 => 8,
        _ => return None,
    })
}

/// Parse the GGUF file `bytes`.
pub fn parse(bytes: &[u8]) -> Res<GgufFile> {
    let mut c = Cursor { b: bytes, pos: 0 };
    let magic: [u8; 4] = c.arr("magic")?;
    if &magic != MAGIC {
        return Err(GgufError {
            offset: 0,
            reason: format!("magic {magic:02x?} is not GGUF"),
        });
    }
    let version = c.u32("version")?;
    if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
        return Err(c.err("a big-endian GGUF file; only little-endian files are supported"));
    }
    if version != 2 && version != 3 {
        return Err(c.err(format!(
            "GGUF version {version} is not supported (2 and 3 are)"
        )));
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;
    // The smallest key/value is 8 (key length) + 4 (type) + 1 (a u8) bytes; the smallest
    // tensor info 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
    if n_kv.checked_mul(13).is_none_or(|b| b > c.left()) {
        return Err(c.err(format!("{n_kv} metadata entries cannot fit in the file")));
    }
    if n_tensors.checked_mul(24).is_none_or(|b| b > c.left()) {
        return Err(c.err(format!("{n_tensors} tensor infos cannot fit in the file")));
    }
    let mut meta = Vec::with_capacity((n_kv as usize).min(MAX_RESERVE));
    let mut keys = HashSet::new();
    for _ in 0..n_kv {
        let at = c.pos as u64;
        let key = c.string("metadata key")?;
        if !keys.insert(key.clone()) {
            return Err(GgufError {
                offset: at,
                reason: format!("duplicate metadata key {key:?}"),
            });
        }
        let ty = c.u32("metadata value type")?;
        let v = c.value(ty, 0, &key)?;
        meta.push((key, v));
    }
    let alignment = match meta.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, Value::Int(a))) if *a > 0 && (*a as u64).is_power_of_two() && *a <= 1 << 30 => {
            *a as u64
        }
        Some((_, v)) => {
            return Err(GgufError {
                offset: 0,
                reason: format!("general.alignment {v:?} is not a power of two"),
            });
        }
    };
    let mut infos = Vec::with_capacity((n_tensors as usize).min(MAX_RESERVE));
    let mut names = HashSet::new();
    for _ in 0..n_tensors {
        let at = c.pos as u64;
        let name = c.string("tensor name")?;
        if !names.insert(name.clone()) {
            return Err(GgufError {
                offset: at,
                reason: format!("duplicate tensor name {name:?}"),
            });
        }
        let n_dims = c.u32("tensor dimension count")?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(c.err(format!(
                "tensor {name:?}: {n_dims} dimensions (1 to {MAX_DIMS})"
            )));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ne.push(c.u64("tensor dimension")?);
        }
        let ty_id = c.u32("tensor type")?;
        let rel = c.u64("tensor offset")?;
        let ty = GgmlType::from_id(ty_id).ok_or_else(|| GgufError {
            offset: at,
            reason: format!("tensor {name:?}: unknown ggml type id {ty_id}"),
        })?;
        infos.push((at, name, ty, ne, rel));
    }
    let data_start = (c.pos as u64).next_multiple_of(alignment);
    let file_len = bytes.len() as u64;
    let mut tensors = Vec::with_capacity(infos.len());
    for (at, name, ty, ne, rel) in infos {
        let fault = |reason: String| GgufError {
            offset: at,
            reason: format!("tensor {name:?}: {reason}"),
        };
        let n_bytes = ty.tensor_bytes(&ne).map_err(fault)?;
        if !rel.is_multiple_of(alignment) {
            return Err(fault(format!(
                "data offset {rel} is not a multiple of the alignment {alignment}"
            )));
        }
        let end = data_start
            .checked_add(rel)
            .and_then(|s| s.checked_add(n_bytes));
        if end.is_none_or(|e| e > file_len) {
            return Err(fault(format!(
                "data at {rel} (+{n_bytes} bytes) runs past the end of the file ({file_len} \
                 bytes, data section at {data_start})"
            )));
        }
        tensors.push(TensorInfo {
            name,
            ty,
            ne,
            offset: data_start + rel,
            n_bytes,
        });
    }
    Ok(GgufFile {
        version,
        meta,
        tensors,
    })
}

impl GgufFile {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The data of `t` (checked to lie in the file by [`parse`]).
    pub fn data<'a>(&self, bytes: &'a [u8], t: &TensorInfo) -> &'a [u8] {
        &bytes[t.offset as usize..(t.offset + t.n_bytes) as usize]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny GGUF writer for tests: key/values (already encoded) and tensors.
    pub(crate) struct Builder {
        pub kv: Vec<(String, u32, Vec<u8>)>,
        pub tensors: Vec<(String, u32, Vec<u64>, Vec<u8>)>,
        pub version: u32,
    }

    pub(crate) fn gstr(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }

    impl Builder {
        pub fn new() -> Self {
            Builder {
                kv: Vec::new(),
                tensors: Vec::new(),
                version: 3,
            }
        }
        pub fn kv_str(mut self, k: &str, v: &str) -> Self {
            self.kv.push((k.into(), 8, gstr(v)));
            self
        }
        pub fn kv_u32(mut self, k: &str, v: u32) -> Self {
            self.kv.push((k.into(), 4, v.to_le_bytes().to_vec()));
            self
        }
        pub fn tensor(mut self, name: &str, ty: u32, ne: &[u64], data: Vec<u8>) -> Self {
            self.tensors.push((name.into(), ty, ne.to_vec(), data));
            self
        }
        pub fn build(&self) -> Vec<u8> {
            let mut b = b"GGUF".to_vec();
            b.extend_from_slice(&self.version.to_le_bytes());
            b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
            b.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
            for (k, t, v) in &self.kv {
                b.extend(gstr(k));
                b.extend_from_slice(&t.to_le_bytes());
                b.extend_from_slice(v);
            }
            let mut off = 0u64;
            let mut offs = Vec::new();
            for (name, ty, ne, data) in &self.tensors {
                b.extend(gstr(name));
                b.extend_from_slice(&(ne.len() as u32).to_le_bytes());
                for d in ne {
                    b.extend_from_slice(&d.to_le_bytes());
                }
                b.extend_from_slice(&ty.to_le_bytes());
                b.extend_from_slice(&off.to_le_bytes());
                offs.push(off);
                off = (off + data.len() as u64).next_multiple_of(32);
            }
            b.resize(b.len().next_multiple_of(32), 0);
            let start = b.len();
            for ((_, _, _, data), o) in self.tensors.iter().zip(offs) {
                b.resize(start + o as usize, 0);
                b.extend_from_slice(data);
            }
            b
        }
    }

    fn sample() -> Vec<u8> {
        Builder::new()
            .kv_str("general.architecture", "llada")
            .kv_u32("llada.block_count", 2)
            .tensor("a", 0, &[4, 2], vec![0u8; 32])
            .tensor("b", 8, &[32], vec![1u8; 34])
            .build()
    }

    #[test]
    fn parses_what_the_builder_writes() {
        let b = sample();
        let f = parse(&b).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.get("llada.block_count"), Some(&Value::Int(2)));
        assert_eq!(
            f.get("general.architecture"),
            Some(&Value::Str("llada".into()))
        );
        let a = f.tensor("a").unwrap();
        assert_eq!((a.shape(), a.n_bytes), (vec![2, 4], 32));
        let t = f.tensor("b").unwrap();
        assert_eq!(f.data(&b, t), &[1u8; 34][..]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let b = sample();
        for n in 0..b.len() - 1 {
            // Cutting inside the last tensor's data or before leaves a fault somewhere.
            assert!(parse(&b[..n]).is_err(), "prefix of {n} bytes parsed");
        }
    }

    #[test]
    fn hostile_counts_lengths_and_types_are_rejected() {
        let good = sample();
        type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|b| b[0] = b'X'), "magic"),
            (
                Box::new(|b| b[4..8].copy_from_slice(&1u32.to_le_bytes())),
                "version 1",
            ),
            (
                Box::new(|b| b[4..8].copy_from_slice(&3u32.to_be_bytes())),
                "big-endian",
            ),
            (
                Box::new(|b| b[8..16].copy_from_slice(&u64::MAX.to_le_bytes())),
                "tensor infos",
            ),
            (
                Box::new(|b| b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes())),
                "metadata entries",
            ),
            // first key's length
            (
                Box::new(|b| b[24..32].copy_from_slice(&u64::MAX.to_le_bytes())),
                "bytes needed",
            ),
        ];
        for (mutate, want) in cases {
            let mut b = good.clone();
            mutate(&mut b);
            let e = parse(&b).unwrap_err();
            assert!(e.reason.contains(want), "{want}: {e:?}");
        }
        // An absurd array count, an unknown value type, a bad bool, an unknown tensor type,
        // too many dims, an overflowing shape, data past the end, a misfit row.
        let arr = |n: u64| {
            let mut v = 8u32.to_le_bytes().to_vec();
            v.extend_from_slice(&n.to_le_bytes());
            v
        };
        let mut bld = Builder::new();
        bld.kv.push(("t".into(), 9, arr(u64::MAX / 2)));
        assert!(
            parse(&bld.build())
                .unwrap_err()
                .reason
                .contains("array elements")
        );
        let mut bld = Builder::new();
        bld.kv.push(("t".into(), 9, arr(3)));
        assert!(parse(&bld.build()).is_err());
        let mut bld = Builder::new();
        bld.kv.push(("t".into(), 13, vec![0; 8]));
        assert!(
            parse(&bld.build())
                .unwrap_err()
                .reason
                .contains("unknown value type 13")
        );
        let mut bld = Builder::new();
        bld.kv.push(("t".into(), 7, vec![2]));
        assert!(parse(&bld.build()).unwrap_err().reason.contains("bool"));
        let e = parse(&Builder::new().tensor("x", 99, &[4], vec![0; 16]).build()).unwrap_err();
        assert!(e.reason.contains("unknown ggml type id 99"), "{e:?}");
        let e = parse(
            &Builder::new()
                .tensor("x", 0, &[1, 1, 1, 1, 1], vec![0; 4])
                .build(),
        );
        assert!(e.unwrap_err().reason.contains("dimensions"));
        let e = parse(
            &Builder::new()
                .tensor("x", 0, &[u64::MAX, 4], vec![])
                .build(),
        );
        assert!(e.unwrap_err().reason.contains("overflow"));
        let e = parse(
            &Builder::new()
                .tensor("x", 0, &[1 << 20], vec![0; 16])
                .build(),
        );
        assert!(e.unwrap_err().reason.contains("past the end"));
        let e = parse(&Builder::new().tensor("x", 8, &[33], vec![0; 64]).build());
        assert!(e.unwrap_err().reason.contains("block"));
        let dup = Builder::new().kv_u32("k", 1).kv_u32("k", 2).build();
        assert!(parse(&dup).unwrap_err().reason.contains("duplicate"));
        let bad_align = Builder::new().kv_u32("general.alignment", 3).build();
        assert!(parse(&bad_align).unwrap_err().reason.contains("alignment"));
    }
}
