//! `dlm inspect`: the header, metadata and tensor table of a `.dlm` file.

use super::{CliResult, json};
use dlm_formats::{ALL_QUANT_TYPES, DlmFile, MetaValue, QuantType, keys};
use std::path::PathBuf;

/// Show what a `.dlm` file holds: format version, metadata and every tensor's type and shape.
///
/// Long arrays (the vocabulary, the merges) are summarised; `--json` prints them whole.
#[derive(clap::Args)]
pub struct Args {
    /// The `.dlm` file.
    file: PathBuf,
    /// Print machine-readable JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Also check every tensor's checksum (reads the whole file).
    #[arg(long)]
    verify: bool,
}

pub fn run(a: Args) -> CliResult {
    super::model_path::require_dlm_file(&a.file)?;
    let (map, file) = DlmFile::open_mapped(&a.file)?;
    if a.verify {
        file.verify_checksums(map.bytes())?;
    }
    let size = map.bytes().len();
    if a.json {
        println!("{}", to_json(&file, size));
        return Ok(());
    }
    println!(
        "{}: .dlm version {}, {} bytes",
        a.file.display(),
        file.version,
        size
    );
    println!("\nmetadata ({} keys):", file.meta.len());
    for (k, v) in &file.meta {
        println!("  {k:<32} {:<6} {}", v.type_name(), summary(v));
    }
    let total: u64 = file.tensors.iter().map(|t| t.len_bytes).sum();
    println!("\ntensors ({}, {} bytes):", file.tensors.len(), total);
    println!(
        "  {:<24} {:<6} {:<16} {:>12} {:>12}",
        "name", "type", "shape", "offset", "bytes"
    );
    for t in &file.tensors {
        let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        println!(
            "  {:<24} {:<6} {:<16} {:>12} {:>12}",
            t.name,
            t.quant.name(),
            shape.join("x"),
            t.offset,
            t.len_bytes
        );
    }
    let policy = file
        .get_str(keys::general::QUANT_POLICY)
        .ok()
        .map(|p| format!(" (policy {p})"))
        .unwrap_or_default();
    println!("\nstorage by type{policy}:");
    for (q, n, bytes) in quant_mix(&file) {
        println!("  {:<6} {n:>5} tensors {bytes:>14} bytes", q.name());
    }
    if let Ok(recorded) = file.get_str_array(keys::general::QUANT_MIX) {
        let actual: Vec<String> = quant_mix(&file)
            .iter()
            .map(|(q, n, b)| format!("{q} {n} {b}"))
            .collect();
        if recorded != actual.as_slice() {
            println!(
                "  warning: {} records {recorded:?}",
                keys::general::QUANT_MIX
            );
        }
    }
    if a.verify {
        println!("\nchecksums: all {} tensors ok", file.tensors.len());
    }
    Ok(())
}

/// (type, tensors, bytes) per storage type the directory uses, in id order: the file's real
/// quantization, whatever its policy name says.
fn quant_mix(file: &DlmFile) -> Vec<(QuantType, usize, u64)> {
    ALL_QUANT_TYPES
        .iter()
        .filter_map(|&q| {
            let ts: Vec<_> = file.tensors.iter().filter(|t| t.quant == q).collect();
            (!ts.is_empty()).then(|| (q, ts.len(), ts.iter().map(|t| t.len_bytes).sum()))
        })
        .collect()
}

fn summary(v: &MetaValue) -> String {
    const SHOW: usize = 6;
    fn list<T: std::fmt::Debug>(v: &[T]) -> String {
        if v.len() <= SHOW {
            format!("{v:?}")
        } else {
            format!("{:?} ... ({} items)", &v[..SHOW], v.len())
        }
    }
    match v {
        MetaValue::U32(x) => x.to_string(),
        MetaValue::I32(x) => x.to_string(),
        MetaValue::U64(x) => x.to_string(),
        MetaValue::F32(x) => x.to_string(),
        MetaValue::F64(x) => x.to_string(),
        MetaValue::Bool(x) => x.to_string(),
        MetaValue::Str(s) if s.chars().count() > 60 => {
            format!("{:?}...", s.chars().take(60).collect::<String>())
        }
        MetaValue::Str(s) => format!("{s:?}"),
        MetaValue::ArrU32(x) => list(x),
        MetaValue::ArrI32(x) => list(x),
        MetaValue::ArrF32(x) => list(x),
        MetaValue::ArrStr(x) => list(x),
    }
}

fn value_json(v: &MetaValue) -> String {
    match v {
        MetaValue::U32(x) => x.to_string(),
        MetaValue::I32(x) => x.to_string(),
        MetaValue::U64(x) => x.to_string(),
        MetaValue::F32(x) => json::float(*x as f64),
        MetaValue::F64(x) => json::float(*x),
        MetaValue::Bool(x) => x.to_string(),
        MetaValue::Str(s) => json::string(s),
        MetaValue::ArrU32(x) => json::numbers(x),
        MetaValue::ArrI32(x) => json::numbers(x),
        MetaValue::ArrF32(x) => {
            let items: Vec<String> = x.iter().map(|f| json::float(*f as f64)).collect();
            format!("[{}]", items.join(","))
        }
        MetaValue::ArrStr(x) => {
            let items: Vec<String> = x.iter().map(|s| json::string(s)).collect();
            format!("[{}]", items.join(","))
        }
    }
}

fn to_json(file: &DlmFile, size: usize) -> String {
    let meta: Vec<String> = file
        .meta
        .iter()
        .map(|(k, v)| format!("{}:{}", json::string(k), value_json(v)))
        .collect();
    let tensors: Vec<String> = file
        .tensors
        .iter()
        .map(|t| {
            format!(
                "{{\"name\":{},\"type\":{},\"shape\":{},\"offset\":{},\"bytes\":{},\"checksum\":{}}}",
                json::string(&t.name),
                json::string(t.quant.name()),
                json::numbers(&t.shape),
                t.offset,
                t.len_bytes,
                t.checksum
            )
        })
        .collect();
    let mix: Vec<String> = quant_mix(file)
        .iter()
        .map(|(q, n, b)| {
            format!(
                "{{\"type\":{},\"tensors\":{n},\"bytes\":{b}}}",
                json::string(q.name())
            )
        })
        .collect();
    format!(
        "{{\"version\":{},\"file_bytes\":{},\"metadata\":{{{}}},\"tensors\":[{}],\"quant_mix\":[{}]}}",
        file.version,
        size,
        meta.join(","),
        tensors.join(","),
        mix.join(",")
    )
}
