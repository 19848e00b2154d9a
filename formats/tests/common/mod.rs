//! Shared fixtures for the container tests: a sample file with every metadata type and every
//! float tensor type, and a walker that finds field positions in the directory for patching.

#![allow(dead_code)]

use dlm_formats::{MetaValue, QuantType, TensorDecl, write_to_vec};

/// Every metadata variant once.
pub fn sample_meta() -> Vec<(String, MetaValue)> {
    vec![
        (
            "general.name".into(),
            MetaValue::Str("tiny ünïcode ✓".into()),
        ),
        ("t.u32".into(), MetaValue::U32(0xDEAD_BEEF)),
        ("t.i32".into(), MetaValue::I32(-123_456)),
        ("t.u64".into(), MetaValue::U64(u64::MAX - 7)),
        ("t.f32".into(), MetaValue::F32(-1.5e-7)),
        ("t.f64".into(), MetaValue::F64(std::f64::consts::PI)),
        ("t.bool_t".into(), MetaValue::Bool(true)),
        ("t.bool_f".into(), MetaValue::Bool(false)),
        ("t.empty_str".into(), MetaValue::Str(String::new())),
        ("t.arr_u32".into(), MetaValue::ArrU32(vec![0, 1, u32::MAX])),
        (
            "t.arr_i32".into(),
            MetaValue::ArrI32(vec![i32::MIN, -1, 0, i32::MAX]),
        ),
        (
            "t.arr_f32".into(),
            MetaValue::ArrF32(vec![0.0, -0.0, 1e30, f32::INFINITY]),
        ),
        (
            "t.arr_str".into(),
            MetaValue::ArrStr(vec!["a b".into(), String::new(), "Ġhello".into()]),
        ),
        ("t.arr_empty".into(), MetaValue::ArrU32(vec![])),
    ]
}

/// Deterministic bytes.
pub fn fill(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub fn decl(name: &str, quant: QuantType, shape: &[u64]) -> TensorDecl {
    TensorDecl {
        name: name.into(),
        quant,
        shape: shape.to_vec(),
    }
}

/// Tensors of each float type plus a quantized one and a scalar; sizes not multiples of 64 so
/// padding is exercised.
pub fn sample_tensors() -> Vec<(TensorDecl, Vec<u8>)> {
    let w: Vec<u8> = (0..3 * 5)
        .flat_map(|i| (i as f32 * 0.25 - 1.0).to_le_bytes())
        .collect();
    let h: Vec<u8> = (0..7)
        .flat_map(|i| half::f16::from_f32(i as f32 - 3.0).to_le_bytes())
        .collect();
    let b: Vec<u8> = (0..2 * 3)
        .flat_map(|i| half::bf16::from_f32(i as f32 * 1.5).to_le_bytes())
        .collect();
    vec![
        (decl("blk.0.wq", QuantType::F32, &[3, 5]), w),
        (decl("norm", QuantType::F16, &[7]), h),
        (decl("emb", QuantType::BF16, &[2, 3]), b),
        (decl("q8", QuantType::Q8_0, &[2, 32]), fill(2 * 34, 9)),
        (
            decl("scalar", QuantType::F32, &[]),
            42.0f32.to_le_bytes().to_vec(),
        ),
    ]
}

pub fn sample_file() -> Vec<u8> {
    write_to_vec(&sample_meta(), &sample_tensors()).expect("sample file")
}

pub fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

pub fn rd_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

pub fn wr_u32(b: &mut [u8], at: usize, x: u32) {
    b[at..at + 4].copy_from_slice(&x.to_le_bytes());
}

pub fn wr_u64(b: &mut [u8], at: usize, x: u64) {
    b[at..at + 8].copy_from_slice(&x.to_le_bytes());
}

/// Field positions of one directory entry.
#[derive(Debug, Clone)]
pub struct EntryPos {
    pub name: String,
    /// Position of the name's first byte (after its length).
    pub name_at: usize,
    pub quant_at: usize,
    pub n_dims_at: usize,
    pub dims_at: usize,
    pub offset_at: usize,
    pub len_at: usize,
    pub checksum_at: usize,
}

/// Walk the directory of a well-formed file.
pub fn entries(b: &[u8]) -> Vec<EntryPos> {
    let n = rd_u64(b, 24) as usize;
    let mut p = rd_u64(b, 40) as usize;
    let mut out = Vec::new();
    for _ in 0..n {
        let len = rd_u32(b, p) as usize;
        let name_at = p + 4;
        let name = String::from_utf8(b[name_at..name_at + len].to_vec()).unwrap();
        let quant_at = name_at + len;
        let n_dims_at = quant_at + 4;
        let dims_at = n_dims_at + 4;
        let offset_at = dims_at + 8 * rd_u32(b, n_dims_at) as usize;
        out.push(EntryPos {
            name,
            name_at,
            quant_at,
            n_dims_at,
            dims_at,
            offset_at,
            len_at: offset_at + 8,
            checksum_at: offset_at + 16,
        });
        p = offset_at + 24;
    }
    out
}

pub fn entry(b: &[u8], name: &str) -> EntryPos {
    entries(b)
        .into_iter()
        .find(|e| e.name == name)
        .expect("entry")
}

/// Position of the first occurrence of `needle` in `b`.
pub fn find(b: &[u8], needle: &[u8]) -> usize {
    b.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle")
}
