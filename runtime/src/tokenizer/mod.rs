//! Byte-level BPE tokenizer (LLaMA-3 and Qwen2 flavours), exact against Hugging Face
//! `tokenizers` with `add_special_tokens=False`.
//!
//! Encoding: added tokens are found verbatim first; each stretch of text between them is
//! NFC-normalized (when asked), split by the pre-tokenizer, mapped to bytes and merged by BPE.
//! Decoding: each id's bytes (its GPT-2 byte-level string read back as bytes) are joined, and
//! invalid UTF-8 is replaced by U+FFFD.

mod bpe;
mod bytelevel;
mod pretokenize;
mod special;
mod unicode_tables;

use std::borrow::Cow;

use dlm_formats::{DlmFile, MetaValue, keys};

use crate::RuntimeError;
use bpe::{Bpe, Scratch};
use special::AddedMatcher;

pub use bytelevel::{byte_to_char_table, char_to_byte};
pub use pretokenize::{CharClass, PreTokenizer, class_of};
pub use unicode_tables::UNICODE_VERSION;

/// Everything a tokenizer is built from: what `dlm convert` stores under `tokenizer.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizerData {
    /// Token strings indexed by id. Model tokens are in GPT-2 byte-level form (`Ġthe`); added
    /// tokens (those in `added_ids`) hold their literal text (`<|eot_id|>`); ids with no token
    /// hold `""`.
    pub tokens: Vec<String>,
    /// Merges in rank order, `(left, right)` in byte-level form.
    pub merges: Vec<(String, String)>,
    /// Ids of added tokens, matched verbatim in input text before anything else.
    pub added_ids: Vec<u32>,
    /// Per entry of `added_ids`, its flags (`dlm_formats::keys::tokenizer::added_flags`:
    /// lstrip, rstrip, single_word, normalized); empty means all zero.
    pub added_flags: Vec<u32>,
    /// Ids of special tokens (skipped by `decode(.., skip_special = true)`).
    pub special_ids: Vec<u32>,
    /// The pre-tokenizer split.
    pub pre: PreTokenizer,
    /// NFC-normalize text before splitting (Qwen2 / Dream).
    pub nfc: bool,
    /// Take a whole piece when it is in the vocabulary before merging (`ignore_merges` of
    /// `tokenizers`; false for the reference models, true for Meta's LLaMA-3).
    pub ignore_merges: bool,
    /// Beginning-of-sequence id.
    pub bos_id: Option<u32>,
    /// End-of-sequence id.
    pub eos_id: Option<u32>,
    /// Padding id.
    pub pad_id: Option<u32>,
    /// End-of-turn id.
    pub eot_id: Option<u32>,
}

/// A ready tokenizer. Shareable across threads (`Send + Sync`).
#[derive(Debug)]
pub struct Tokenizer {
    /// Token strings by id, as given.
    tokens: Vec<String>,
    /// Bytes each id decodes to (`[vocab_size][..]`).
    token_bytes: Vec<Vec<u8>>,
    /// `is_special[id]`.
    is_special: Vec<bool>,
    bpe: Bpe,
    /// Added tokens matched in the raw text (those without the `normalized` flag).
    added: AddedMatcher,
    /// Added tokens matched in the normalized text between the raw matches.
    added_normalized: AddedMatcher,
    pre: PreTokenizer,
    nfc: bool,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    pad_id: Option<u32>,
    eot_id: Option<u32>,
}

fn bad(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Tokenizer(msg.into())
}

impl Tokenizer {
    /// Build and check a tokenizer: every id in range and naming a token, every merge made of
    /// known tokens into a known token.
    pub fn new(data: TokenizerData) -> Result<Tokenizer, RuntimeError> {
        let n = data.tokens.len();
        if u32::try_from(n).is_err() {
            return Err(bad(format!(
                "vocabulary of {n} tokens does not fit u32 ids"
            )));
        }
        let check = |what: &str, id: u32| -> Result<(), RuntimeError> {
            match data.tokens.get(id as usize) {
                Some(t) if !t.is_empty() => Ok(()),
                Some(_) => Err(bad(format!("{what} id {id} names no token"))),
                None => Err(bad(format!(
                    "{what} id {id} is outside the vocabulary of {n}"
                ))),
            }
        };
        let mut is_added = vec![false; n];
        for &id in &data.added_ids {
            check("added token", id)?;
            is_added[id as usize] = true;
        }
        let mut is_special = vec![false; n];
        for &id in &data.special_ids {
            check("special token", id)?;
            is_special[id as usize] = true;
        }
        for (what, id) in [
            ("bos", data.bos_id),
            ("eos", data.eos_id),
            ("pad", data.pad_id),
            ("eot", data.eot_id),
        ] {
            if let Some(id) = id {
                check(what, id)?;
            }
        }
        let model_tokens: Vec<Option<&str>> = data
            .tokens
            .iter()
            .zip(&is_added)
            .map(|(t, &added)| (!added && !t.is_empty()).then_some(t.as_str()))
            .collect();
        let bpe = Bpe::new(&model_tokens, &data.merges, data.ignore_merges)?;
        if !data.added_flags.is_empty() && data.added_flags.len() != data.added_ids.len() {
            return Err(bad(format!(
                "{} added-token flags for {} added tokens",
                data.added_flags.len(),
                data.added_ids.len()
            )));
        }
        let flags_of = |k: usize| data.added_flags.get(k).copied().unwrap_or(0);
        let normalized = dlm_formats::keys::tokenizer::added_flags::NORMALIZED;
        let matcher = |want_normalized: bool| {
            AddedMatcher::with_flags(data.added_ids.iter().enumerate().filter_map(|(k, &id)| {
                let f = flags_of(k);
                ((f & normalized != 0) == want_normalized)
                    .then(|| (data.tokens[id as usize].clone(), id, f))
            }))
        };
        let added = matcher(false);
        let added_normalized = matcher(true);
        let token_bytes = data
            .tokens
            .iter()
            .map(|t| bytelevel::token_to_bytes(t))
            .collect();
        Ok(Tokenizer {
            tokens: data.tokens,
            token_bytes,
            is_special,
            bpe,
            added,
            added_normalized,
            pre: data.pre,
            nfc: data.nfc,
            bos_id: data.bos_id,
            eos_id: data.eos_id,
            pad_id: data.pad_id,
            eot_id: data.eot_id,
        })
    }

    /// Read the `tokenizer.*` keys of a `.dlm` file (see `dlm_formats::keys::tokenizer`).
    pub fn from_file(file: &DlmFile) -> Result<Tokenizer, RuntimeError> {
        Tokenizer::new(data_from_meta(&file.meta)?)
    }

    /// Ids of `text`, without BOS/EOS (`add_special_tokens=False`); added tokens written in the
    /// text become their ids. As in `tokenizers`, the added tokens without the `normalized`
    /// flag are found in the raw text first; each stretch between them is normalized and
    /// searched for the `normalized` ones; what remains is split and merged.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let mut scratch = Scratch::default();
        let mut cache = self.bpe.cache();
        let mut last = 0;
        self.added.find_all(text, |start, end, id| {
            self.encode_plain(&text[last..start], &mut out, &mut scratch, &mut cache);
            out.push(id);
            last = end;
        });
        self.encode_plain(&text[last..], &mut out, &mut scratch, &mut cache);
        out
    }

    /// Encode text that holds no raw-matched added token: normalize, find the normalized
    /// added tokens, and split and merge the rest.
    fn encode_plain(
        &self,
        text: &str,
        out: &mut Vec<u32>,
        scratch: &mut Scratch,
        cache: &mut Option<std::sync::MutexGuard<'_, bpe::FxMap<String, Vec<u32>>>>,
    ) {
        if text.is_empty() {
            return;
        }
        let text: Cow<'_, str> = if self.nfc && !unicode_normalization::is_nfc(text) {
            Cow::Owned(unicode_normalization::UnicodeNormalization::nfc(text).collect())
        } else {
            Cow::Borrowed(text)
        };
        let mut last = 0;
        self.added_normalized.find_all(&text, |start, end, id| {
            self.encode_pieces(&text[last..start], out, scratch, cache);
            out.push(id);
            last = end;
        });
        self.encode_pieces(&text[last..], out, scratch, cache);
    }

    /// Pre-tokenize and merge normalized text that holds no added token.
    fn encode_pieces(
        &self,
        text: &str,
        out: &mut Vec<u32>,
        scratch: &mut Scratch,
        cache: &mut Option<std::sync::MutexGuard<'_, bpe::FxMap<String, Vec<u32>>>>,
    ) {
        if text.is_empty() {
            return;
        }
        self.pre.split(text, |piece| {
            self.bpe.encode_piece(piece, out, scratch, cache)
        });
    }

    /// Text of `ids` that never fails: an id with no token (out of range, a hole, an
    /// embedding row past the tokenizer's vocabulary) becomes [`unknown_placeholder`] and is
    /// listed in `unknown_ids`. With `skip_special`, special ids are left out.
    pub fn decode_lossy(&self, ids: &[u32], skip_special: bool) -> Decoded {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        let mut unknown_ids = Vec::new();
        for &id in ids {
            let i = id as usize;
            match self.tokens.get(i) {
                Some(t) if !t.is_empty() => {
                    if !(skip_special && self.is_special[i]) {
                        bytes.extend_from_slice(&self.token_bytes[i]);
                    }
                }
                _ => {
                    unknown_ids.push(id);
                    bytes.extend_from_slice(unknown_placeholder(id).as_bytes());
                }
            }
        }
        let text = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Decoded { text, unknown_ids }
    }

    /// Text of `ids`. Unknown ids (out of range or holes) are an error; with `skip_special`,
    /// special ids are left out. Bytes that do not form UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, RuntimeError> {
        let bytes = self.decode_bytes(ids, skip_special)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Raw bytes of `ids` (for streaming output, where a char may span two steps).
    pub fn decode_bytes(&self, ids: &[u32], skip_special: bool) -> Result<Vec<u8>, RuntimeError> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let i = id as usize;
            match self.tokens.get(i) {
                Some(t) if !t.is_empty() => {}
                _ => return Err(bad(format!("cannot decode unknown id {id}"))),
            }
            if skip_special && self.is_special[i] {
                continue;
            }
            bytes.extend_from_slice(&self.token_bytes[i]);
        }
        Ok(bytes)
    }

    /// The stored string of `id` (byte-level form, or an added token's literal text).
    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.tokens
            .get(id as usize)
            .map(String::as_str)
            .filter(|t| !t.is_empty())
    }

    /// The bytes `id` decodes to.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.token_str(id)?;
        self.token_bytes.get(id as usize).map(Vec::as_slice)
    }

    /// Number of ids (including holes and added tokens).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Id of the added token whose text is exactly `text` (`<|eot_id|>`).
    pub fn id_of(&self, text: &str) -> Option<u32> {
        self.added.id_of(text)
    }

    /// Whether `id` is a special token.
    pub fn is_special(&self, id: u32) -> bool {
        self.is_special.get(id as usize).copied().unwrap_or(false)
    }

    /// The pre-tokenizer in use.
    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
    }

    /// Whether input is NFC-normalized.
    pub fn nfc(&self) -> bool {
        self.nfc
    }

    /// Beginning-of-sequence id.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// End-of-sequence id.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Padding id.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// End-of-turn id.
    pub fn eot_id(&self) -> Option<u32> {
        self.eot_id
    }
}

/// What [`Tokenizer::decode_lossy`] gives: the text and the ids it had no token for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decoded {
    /// The text, with a placeholder for each unknown id.
    pub text: String,
    /// The unknown ids, in order, repeated as they occur.
    pub unknown_ids: Vec<u32>,
}

/// The visible stand-in for an id the tokenizer has no token for: `⟨unk 126400⟩`.
pub fn unknown_placeholder(id: u32) -> String {
    format!("\u{27E8}unk {id}\u{27E9}")
}

/// Build `TokenizerData` from `.dlm` metadata.
pub fn data_from_meta(meta: &[(String, MetaValue)]) -> Result<TokenizerData, RuntimeError> {
    use keys::tokenizer as k;
    let get = |key: &str| meta.iter().find(|(name, _)| name == key).map(|(_, v)| v);
    let wrong = |key: &str, want: &str, v: &MetaValue| {
        bad(format!(
            "metadata `{key}` is {}, expected {want}",
            v.type_name()
        ))
    };
    let get_str = |key: &str| -> Result<Option<&str>, RuntimeError> {
        match get(key) {
            None => Ok(None),
            Some(MetaValue::Str(s)) => Ok(Some(s)),
            Some(v) => Err(wrong(key, "str", v)),
        }
    };
    let get_u32 = |key: &str| -> Result<Option<u32>, RuntimeError> {
        match get(key) {
            None => Ok(None),
            Some(MetaValue::U32(x)) => Ok(Some(*x)),
            Some(v) => Err(wrong(key, "u32", v)),
        }
    };
    let get_u32s = |key: &str| -> Result<Vec<u32>, RuntimeError> {
        match get(key) {
            None => Ok(Vec::new()),
            Some(MetaValue::ArrU32(x)) => Ok(x.clone()),
            Some(v) => Err(wrong(key, "[u32]", v)),
        }
    };
    let get_strs = |key: &str| -> Result<&[String], RuntimeError> {
        match get(key) {
            None => Err(bad(format!("metadata `{key}` is missing"))),
            Some(MetaValue::ArrStr(x)) => Ok(x),
            Some(v) => Err(wrong(key, "[str]", v)),
        }
    };

    if let Some(model) = get_str(k::MODEL)?
        && model != "bpe_bytelevel"
    {
        return Err(RuntimeError::Unsupported(format!(
            "tokenizer model `{}`",
            dlm_formats::escape_controls(model)
        )));
    }
    let tokens = get_strs(k::TOKENS)?.to_vec();
    let merges = get_strs(k::MERGES)?
        .iter()
        .enumerate()
        .map(|(rank, m)| match m.split_once(' ') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => {
                Ok((a.to_string(), b.to_string()))
            }
            _ => Err(bad(format!(
                "merge {rank} `{}` is not `left right`",
                dlm_formats::escape_controls(m)
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pre_name =
        get_str(k::PRE)?.ok_or_else(|| bad(format!("metadata `{}` is missing", k::PRE)))?;
    let pre = PreTokenizer::from_name(pre_name).ok_or_else(|| {
        RuntimeError::Unsupported(format!(
            "pre-tokenizer `{}`",
            dlm_formats::escape_controls(pre_name)
        ))
    })?;
    let nfc = match get_str(k::NORMALIZER)?.unwrap_or("none") {
        "none" => false,
        "nfc" => true,
        other => {
            return Err(RuntimeError::Unsupported(format!(
                "normalizer `{}`",
                dlm_formats::escape_controls(other)
            )));
        }
    };
    Ok(TokenizerData {
        tokens,
        merges,
        added_ids: get_u32s(k::ADDED_IDS)?,
        added_flags: get_u32s(k::ADDED_FLAGS)?,
        special_ids: get_u32s(k::SPECIAL_IDS)?,
        pre,
        nfc,
        ignore_merges: match get(k::IGNORE_MERGES) {
            None => false,
            Some(MetaValue::Bool(b)) => *b,
            Some(v) => return Err(wrong(k::IGNORE_MERGES, "bool", v)),
        },
        bos_id: get_u32(k::BOS_ID)?,
        eos_id: get_u32(k::EOS_ID)?,
        pad_id: get_u32(k::PAD_ID)?,
        eot_id: get_u32(k::EOT_ID)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::tokenizer as k;

    fn byte_tokens() -> Vec<String> {
        byte_to_char_table().iter().map(|c| c.to_string()).collect()
    }

    fn toy() -> Tokenizer {
        let mut tokens = byte_tokens();
        tokens.push("Ġw".into()); // 256
        tokens.push("<|end|>".into()); // 257
        tokens.push(String::new()); // 258: hole
        Tokenizer::new(TokenizerData {
            tokens,
            merges: vec![("Ġ".into(), "w".into())],
            added_ids: vec![257],
            added_flags: vec![],
            special_ids: vec![257],
            pre: PreTokenizer::Llama3,
            nfc: true,
            ignore_merges: false,
            bos_id: None,
            eos_id: Some(257),
            pad_id: None,
            eot_id: None,
        })
        .expect("toy tokenizer")
    }

    #[test]
    fn encode_decode_round_trip() {
        let t = toy();
        let ids = t.encode("a w<|end|>é");
        assert_eq!(ids, [b'a' as u32, 256, 257, 0xC3, 0xA9]);
        assert_eq!(t.decode(&ids, false).expect("decode"), "a w<|end|>é");
        assert_eq!(t.decode(&ids, true).expect("decode"), "a wé");
        // NFC: e + combining acute becomes é before byte mapping.
        assert_eq!(t.encode("e\u{301}"), [0xC3, 0xA9]);
        assert_eq!(t.id_of("<|end|>"), Some(257));
    }

    #[test]
    fn ignore_merges_is_read_from_metadata_and_takes_whole_pieces() {
        let mut tokens = byte_tokens();
        tokens.push("ab".into()); // 256
        tokens.push("abc".into()); // 257: in the vocabulary, but no merge builds it
        let meta = |ignore: Option<bool>| {
            let mut m = vec![
                (k::TOKENS.to_string(), MetaValue::ArrStr(tokens.clone())),
                (k::MERGES.to_string(), MetaValue::ArrStr(vec!["a b".into()])),
                (k::PRE.to_string(), MetaValue::Str("llama3".into())),
            ];
            if let Some(b) = ignore {
                m.push((k::IGNORE_MERGES.to_string(), MetaValue::Bool(b)));
            }
            m
        };
        let encode = |m: Vec<(String, MetaValue)>| {
            Tokenizer::new(data_from_meta(&m).expect("data"))
                .expect("tokenizer")
                .encode("abc")
        };
        assert_eq!(encode(meta(None)), [256, b'c' as u32]);
        assert_eq!(encode(meta(Some(false))), [256, b'c' as u32]);
        assert_eq!(encode(meta(Some(true))), [257]);
        let mut bad = meta(None);
        bad.push((k::IGNORE_MERGES.to_string(), MetaValue::U32(1)));
        assert!(data_from_meta(&bad).is_err());
    }

    #[test]
    fn decode_errors_and_lossy() {
        let t = toy();
        assert!(t.decode(&[258], false).is_err());
        assert!(t.decode(&[9999], false).is_err());
        assert_eq!(t.decode(&[0xC3], false).expect("decode"), "\u{FFFD}");
    }

    #[test]
    fn decode_lossy_shows_and_reports_unknown_ids() {
        let t = toy();
        // 258 is a hole, 9999 a padded embedding row past the tokenizer.
        let d = t.decode_lossy(&[b'a' as u32, 258, 257, 9999, b'b' as u32], true);
        assert_eq!(d.text, "a\u{27E8}unk 258\u{27E9}\u{27E8}unk 9999\u{27E9}b");
        assert_eq!(d.unknown_ids, [258, 9999]);
        let d = t.decode_lossy(&[b'a' as u32, 257], false);
        assert_eq!(d.text, "a<|end|>");
        assert!(d.unknown_ids.is_empty());
    }

    #[test]
    fn model_text_in_errors_has_controls_escaped() {
        let meta = vec![
            (k::TOKENS.to_string(), MetaValue::ArrStr(byte_tokens())),
            (
                k::MERGES.to_string(),
                MetaValue::ArrStr(vec!["\u{1b}[2J\u{1b}[H oops x".into()]),
            ),
            (
                k::PRE.to_string(),
                MetaValue::Str("llama3\u{1b}[31m".into()),
            ),
        ];
        let e = data_from_meta(&meta).unwrap_err().to_string();
        assert!(!e.contains('\u{1b}') && e.contains("\\u{1b}[2J"), "{e}");
        let mut meta = meta;
        meta[1].1 = MetaValue::ArrStr(vec![]);
        let e = data_from_meta(&meta).unwrap_err().to_string();
        assert!(
            !e.contains('\u{1b}') && e.contains("llama3\\u{1b}[31m"),
            "{e}"
        );
        let e = Tokenizer::new(TokenizerData {
            merges: vec![("\u{7}a".into(), "\nb".into())],
            ..data_from_meta(&[
                (k::TOKENS.to_string(), MetaValue::ArrStr(byte_tokens())),
                (k::MERGES.to_string(), MetaValue::ArrStr(vec![])),
                (k::PRE.to_string(), MetaValue::Str("llama3".into())),
            ])
            .expect("data")
        })
        .unwrap_err()
        .to_string();
        assert!(!e.contains('\u{7}') && !e.contains('\n'), "{e}");
    }

    #[test]
    fn added_token_flags_are_honoured() {
        use dlm_formats::keys::tokenizer::added_flags as f;
        let mut tokens = byte_tokens();
        tokens.push("<L>".into()); // 256: lstrip
        tokens.push("<R>".into()); // 257: rstrip
        tokens.push("word".into()); // 258: single_word
        tokens.push("\u{e9}t\u{e9}".into()); // 259: normalized ("été" in NFC)
        tokens.push("<N>".into()); // 260: no flags
        let t = |flags: Vec<u32>| {
            Tokenizer::new(TokenizerData {
                tokens: tokens.clone(),
                merges: vec![],
                added_ids: vec![256, 257, 258, 259, 260],
                added_flags: flags,
                special_ids: vec![],
                pre: PreTokenizer::Llama3,
                nfc: true,
                ignore_merges: false,
                bos_id: None,
                eos_id: None,
                pad_id: None,
                eot_id: None,
            })
            .expect("tokenizer")
        };
        let flagged = t(vec![f::LSTRIP, f::RSTRIP, f::SINGLE_WORD, f::NORMALIZED, 0]);
        let plain = t(vec![]);
        let space = b' ' as u32;
        // lstrip: the space before <L> is taken by it; without the flag it stays a token.
        assert_eq!(flagged.encode("a <L>"), [b'a' as u32, 256]);
        assert_eq!(plain.encode("a <L>"), [b'a' as u32, space, 256]);
        // rstrip: the space after <R> is taken.
        assert_eq!(flagged.encode("<R> b"), [257, b'b' as u32]);
        assert_eq!(plain.encode("<R> b"), [257, space, b'b' as u32]);
        // single_word: not inside a word.
        let w: Vec<u32> = "xword".bytes().map(u32::from).collect();
        assert_eq!(flagged.encode("xword"), w);
        assert_eq!(plain.encode("xword"), [b'x' as u32, 258]);
        assert_eq!(flagged.encode("word"), [258]);
        // normalized: "e\u{301}te\u{301}" only matches after NFC.
        assert_eq!(flagged.encode("e\u{301}te\u{301}"), [259]);
        assert_ne!(plain.encode("e\u{301}te\u{301}"), [259]);
        // Stored flags are read back.
        assert!(flagged.encode("<N>") == [260]);
        let bad = Tokenizer::new(TokenizerData {
            added_flags: vec![0],
            ..TokenizerData {
                tokens: tokens.clone(),
                merges: vec![],
                added_ids: vec![256, 257],
                added_flags: vec![],
                special_ids: vec![],
                pre: PreTokenizer::Llama3,
                nfc: false,
                ignore_merges: false,
                bos_id: None,
                eos_id: None,
                pad_id: None,
                eot_id: None,
            }
        });
        assert!(bad.is_err());
    }

    #[test]
    fn rejects_bad_data() {
        let mut data = TokenizerData {
            tokens: byte_tokens(),
            merges: vec![],
            added_ids: vec![300],
            added_flags: vec![],
            special_ids: vec![],
            pre: PreTokenizer::Qwen2,
            nfc: false,
            ignore_merges: false,
            bos_id: None,
            eos_id: None,
            pad_id: None,
            eot_id: None,
        };
        assert!(Tokenizer::new(data.clone()).is_err());
        data.added_ids.clear();
        data.merges = vec![("x".into(), "yz".into())];
        assert!(Tokenizer::new(data.clone()).is_err());
        data.merges.clear();
        data.eos_id = Some(256);
        assert!(Tokenizer::new(data).is_err());
    }

    #[test]
    fn reads_metadata() {
        use keys::tokenizer as k;
        let meta = vec![
            (k::TOKENS.to_string(), MetaValue::ArrStr(byte_tokens())),
            (k::MERGES.to_string(), MetaValue::ArrStr(vec!["Ġ a".into()])),
            (k::PRE.to_string(), MetaValue::Str("qwen2".into())),
            (k::NORMALIZER.to_string(), MetaValue::Str("nfc".into())),
            (k::EOS_ID.to_string(), MetaValue::U32(0)),
        ];
        // "Ġa" is not in the vocabulary: the merge is rejected.
        assert!(Tokenizer::new(data_from_meta(&meta).expect("meta")).is_err());
        let mut meta = meta;
        meta[1].1 = MetaValue::ArrStr(vec![]);
        let t = Tokenizer::new(data_from_meta(&meta).expect("meta")).expect("tokenizer");
        assert_eq!(t.pre_tokenizer(), PreTokenizer::Qwen2);
        assert!(t.nfc());
        assert_eq!(t.eos_id(), Some(0));
        meta[2].1 = MetaValue::Str("gpt2".into());
        assert!(matches!(
            data_from_meta(&meta),
            Err(RuntimeError::Unsupported(_))
        ));
        meta[1].1 = MetaValue::ArrStr(vec!["nospace".into()]);
        assert!(data_from_meta(&meta).is_err());
    }
}
