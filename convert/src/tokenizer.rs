//! `tokenizer.json` (byte-level BPE) to the `tokenizer.*` metadata: tokens by id, merges in
//! rank order, added and special ids, and the pre-tokenizer and normalizer kinds the runtime
//! implements by hand.

use crate::error::{ConvertError, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The Split regex of LLaMA-3's pre-tokenizer (digits in runs of up to three).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Split regex of Qwen2's pre-tokenizer (each digit alone).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A parsed byte-level BPE tokenizer.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Token strings by id; ids without a token hold "". Length = the model's vocab size.
    pub tokens: Vec<String>,
    /// Merges in rank order, `left right`.
    pub merges: Vec<String>,
    /// Ids of added tokens (matched verbatim in text).
    pub added_ids: Vec<u32>,
    /// Per added id, its `lstrip` / `rstrip` / `single_word` / `normalized` flags as the bits
    /// of `dlm_formats::keys::tokenizer::added_flags`.
    pub added_flags: Vec<u32>,
    /// Ids of special added tokens.
    pub special_ids: Vec<u32>,
    /// `llama3` or `qwen2`.
    pub pre: &'static str,
    /// `none` or `nfc`.
    pub normalizer: &'static str,
    /// BPE `ignore_merges`: whole in-vocabulary pieces skip merging.
    pub ignore_merges: bool,
    ids: HashMap<String, u32>,
}

impl Tokenizer {
    /// A tokenizer from its parts (a GGUF file's `tokenizer.ggml.*`): `tokens` by id, ids
    /// without a token holding "".
    pub fn from_parts(
        tokens: Vec<String>,
        merges: Vec<String>,
        added_ids: Vec<u32>,
        special_ids: Vec<u32>,
        pre: &'static str,
        normalizer: &'static str,
        ignore_merges: bool,
    ) -> Self {
        let ids = tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.is_empty())
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        // GGUF stores no added-token flags: none set, one zero per added token (as a
        // tokenizer.json without flags converts).
        let added_flags = vec![0; added_ids.len()];
        Tokenizer {
            tokens,
            merges,
            added_ids,
            added_flags,
            special_ids,
            pre,
            normalizer,
            ignore_merges,
            ids,
        }
    }

    /// The id of the token `text` (vocabulary or added), if any.
    pub fn id_of(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }
}

struct Ctx {
    path: PathBuf,
}

impl Ctx {
    fn err(&self, reason: impl Into<String>) -> ConvertError {
        ConvertError::Tokenizer {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }
}

/// Parse `tokenizer.json` (already as JSON) for a model with `vocab_size` embedding rows.
pub fn parse(json: &Value, path: &Path, vocab_size: u64) -> Result<Tokenizer> {
    let cx = Ctx {
        path: path.to_path_buf(),
    };
    let model = json.get("model").ok_or_else(|| cx.err("no \"model\""))?;
    let mtype = model
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    if mtype != "BPE" {
        return Err(cx.err(format!("model type {mtype:?} is not supported (BPE is)")));
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if let Some(v) = model
            .get(key)
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
        {
            return Err(cx.err(format!("BPE {key} = {v} is not supported")));
        }
    }
    if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        return Err(cx.err("BPE byte_fallback is not supported (byte-level BPE is)"));
    }
    let pre = pre_tokenizer(json.get("pre_tokenizer"), &cx)?;
    let normalizer = normalizer(json.get("normalizer"), &cx)?;

    let n = usize::try_from(vocab_size).map_err(|_| cx.err("vocab size too large"))?;
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut ids = HashMap::new();
    let mut put = |text: &str, id: u64, tokens: &mut Vec<Option<String>>| -> Result<()> {
        let slot = usize::try_from(id).ok().filter(|&i| i < n).ok_or_else(|| {
            cx.err(format!(
                "token {text:?} has id {id}, beyond the model's {n} rows"
            ))
        })?;
        match &tokens[slot] {
            Some(old) if old != text => {
                return Err(cx.err(format!("id {id} is both {old:?} and {text:?}")));
            }
            _ => tokens[slot] = Some(text.to_string()),
        }
        ids.insert(text.to_string(), id as u32);
        Ok(())
    };
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| cx.err("model.vocab is not an object"))?;
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| cx.err(format!("vocab entry {text:?} has a non-integer id")))?;
        put(text, id, &mut tokens)?;
    }
    let mut added_ids = Vec::new();
    let mut added_flags = Vec::new();
    let mut special_ids = Vec::new();
    for t in json
        .get("added_tokens")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let (Some(id), Some(text)) = (
            t.get("id").and_then(Value::as_u64),
            t.get("content").and_then(Value::as_str),
        ) else {
            return Err(cx.err(format!("added token {t} lacks an id or content")));
        };
        put(text, id, &mut tokens)?;
        added_ids.push(id as u32);
        added_flags.push(added_token_flags(t, &cx)?);
        if t.get("special").and_then(Value::as_bool) == Some(true) {
            special_ids.push(id as u32);
        }
    }

    let merges_json = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or_else(|| cx.err("model.merges is not an array"))?;
    let mut merges = Vec::with_capacity(merges_json.len());
    for (rank, m) in merges_json.iter().enumerate() {
        let (l, r) = match m {
            Value::String(s) => {
                let mut parts = s.split(' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(l), Some(r), None) => (l, r),
                    _ => return Err(cx.err(format!("merge {rank} {s:?} is not `left right`"))),
                }
            }
            Value::Array(a) => match a.as_slice() {
                [Value::String(l), Value::String(r)] => (l.as_str(), r.as_str()),
                _ => return Err(cx.err(format!("merge {rank} {m} is not a pair of strings"))),
            },
            _ => return Err(cx.err(format!("merge {rank} {m} is neither a string nor a pair"))),
        };
        if l.is_empty() || r.is_empty() || l.contains(' ') || r.contains(' ') {
            return Err(cx.err(format!(
                "merge {rank} ({l:?}, {r:?}) has an empty or spaced side"
            )));
        }
        merges.push(format!("{l} {r}"));
    }

    Ok(Tokenizer {
        tokens: tokens.into_iter().map(Option::unwrap_or_default).collect(),
        merges,
        added_ids,
        added_flags,
        special_ids,
        pre,
        normalizer,
        ignore_merges: model
            .get("ignore_merges")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        ids,
    })
}

/// The flags of one `added_tokens` entry. `tokenizers` defaults `normalized` to the opposite of
/// `special` when absent; the others to false. A present flag that is not a bool is an error.
fn added_token_flags(t: &Value, cx: &Ctx) -> Result<u32> {
    use dlm_formats::keys::tokenizer::added_flags as f;
    let special = t.get("special").and_then(Value::as_bool).unwrap_or(false);
    let mut bits = 0;
    for (key, bit, default) in [
        ("lstrip", f::LSTRIP, false),
        ("rstrip", f::RSTRIP, false),
        ("single_word", f::SINGLE_WORD, false),
        ("normalized", f::NORMALIZED, !special),
    ] {
        let on = match t.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(cx.err(format!("added token {t}: {key} = {v} is not a bool"))),
        };
        if on {
            bits |= bit;
        }
    }
    Ok(bits)
}

/// `Sequence[Split(regex, Isolated), ByteLevel(use_regex=false)]` with LLaMA-3's or Qwen2's
/// regex; anything else is an error naming it.
fn pre_tokenizer(v: Option<&Value>, cx: &Ctx) -> Result<&'static str> {
    let v = v.ok_or_else(|| cx.err("no pre_tokenizer"))?;
    let ty = |v: &Value| {
        v.get("type")
            .and_then(Value::as_str)
            .unwrap_or("<none>")
            .to_string()
    };
    let seq = match ty(v).as_str() {
        "Sequence" => v
            .get("pretokenizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        other => {
            return Err(cx.err(format!(
                "pre_tokenizer {other:?} is not supported (Sequence[Split, ByteLevel] is)"
            )));
        }
    };
    let [split, bytelevel] = seq.as_slice() else {
        return Err(cx.err(format!(
            "pre_tokenizer sequence of {} parts is not supported (Split, ByteLevel)",
            seq.len()
        )));
    };
    if ty(split) != "Split" || ty(bytelevel) != "ByteLevel" {
        return Err(cx.err(format!(
            "pre_tokenizer sequence [{}, {}] is not supported (Split, ByteLevel)",
            ty(split),
            ty(bytelevel)
        )));
    }
    if bytelevel.get("use_regex").and_then(Value::as_bool) == Some(true)
        || bytelevel.get("add_prefix_space").and_then(Value::as_bool) == Some(true)
    {
        return Err(
            cx.err("ByteLevel pre-tokenizer with use_regex or add_prefix_space is not supported")
        );
    }
    let behavior = split.get("behavior").and_then(Value::as_str).unwrap_or("");
    if behavior != "Isolated" || split.get("invert").and_then(Value::as_bool) == Some(true) {
        return Err(cx.err(format!(
            "Split behavior {behavior:?} (or invert) is not supported"
        )));
    }
    let regex = split
        .get("pattern")
        .and_then(|p| p.get("Regex"))
        .and_then(Value::as_str)
        .ok_or_else(|| cx.err("Split pattern is not a Regex"))?;
    match regex {
        LLAMA3_SPLIT => Ok("llama3"),
        QWEN2_SPLIT => Ok("qwen2"),
        other if other.contains(r"\p{N}{1,3}") => Err(cx.err(format!(
            "Split regex {other:?} looks like LLaMA-3's but differs from it; not supported"
        ))),
        other => Err(cx.err(format!(
            "Split regex {other:?} is neither LLaMA-3's nor Qwen2's; not supported"
        ))),
    }
}

fn normalizer(v: Option<&Value>, cx: &Ctx) -> Result<&'static str> {
    match v {
        None | Some(Value::Null) => Ok("none"),
        Some(v) => match v.get("type").and_then(Value::as_str) {
            Some("NFC") => Ok("nfc"),
            Some("Sequence")
                if v.get("normalizers")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty) =>
            {
                Ok("none")
            }
            _ => Err(cx.err(format!("normalizer {v} is not supported (NFC or none)"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tok(merges: Value, regex: &str, normalizer: Value) -> Value {
        json!({
            "normalizer": normalizer,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": merges},
            "added_tokens": [{"id": 4, "content": "<s>", "special": true}]
        })
    }

    #[test]
    fn both_merge_forms_and_padding() {
        let p = Path::new("tokenizer.json");
        let t = parse(
            &tok(json!(["a b"]), QWEN2_SPLIT, json!({"type": "NFC"})),
            p,
            6,
        )
        .unwrap();
        assert_eq!(t.tokens, vec!["a", "b", "ab", "", "<s>", ""]);
        assert_eq!(t.merges, vec!["a b"]);
        assert_eq!((t.pre, t.normalizer), ("qwen2", "nfc"));
        assert_eq!(
            (t.added_ids.clone(), t.special_ids.clone()),
            (vec![4], vec![4])
        );
        let t = parse(&tok(json!([["a", "b"]]), LLAMA3_SPLIT, Value::Null), p, 5).unwrap();
        assert_eq!(
            (t.merges[0].as_str(), t.pre, t.normalizer),
            ("a b", "llama3", "none")
        );
        assert_eq!(t.id_of("<s>"), Some(4));
    }

    #[test]
    fn rejections_name_the_problem() {
        let p = Path::new("tokenizer.json");
        let e = parse(&tok(json!(["a b"]), r"\s+", Value::Null), p, 6).unwrap_err();
        assert!(
            e.to_string().contains("neither LLaMA-3's nor Qwen2's"),
            "{e}"
        );
        let e = parse(
            &tok(json!(["a b"]), QWEN2_SPLIT, json!({"type": "NFKC"})),
            p,
            6,
        )
        .unwrap_err();
        assert!(e.to_string().contains("normalizer"), "{e}");
        let e = parse(&tok(json!(["a b"]), QWEN2_SPLIT, Value::Null), p, 4).unwrap_err();
        assert!(e.to_string().contains("beyond the model's 4 rows"), "{e}");
        let e = parse(&tok(json!(["a b c"]), QWEN2_SPLIT, Value::Null), p, 6).unwrap_err();
        assert!(e.to_string().contains("merge 0"), "{e}");
        let mut j = tok(json!(["a b"]), QWEN2_SPLIT, Value::Null);
        j["model"]["type"] = json!("Unigram");
        assert!(parse(&j, p, 6).unwrap_err().to_string().contains("Unigram"));
    }
}
