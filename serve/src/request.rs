//! An OpenAI-style request body turned into a prompt and decoding parameters, every field
//! checked with an error that names it. Diffusion settings are extra fields (`steps`,
//! `block_length`, `algorithm`, `threshold`, `factor`, `cache`, `top_k`, `cfg`, `alg_temp`,
//! `eps`, `stop_early`, `stream_canvas`) that default to the server's settings, which default
//! to the model file's.

use crate::error::ApiError;
use dlm_runtime::chat::Role;
use dlm_runtime::decode::{Algorithm, CacheMode, DecodeParams, Schedule};
use dlm_runtime::{Engine, RuntimeError};
use serde_json::{Map, Value};

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`: messages through the model's chat format.
    Chat,
    /// `/v1/completions`: a raw prompt (text or token ids).
    Completion,
}

/// Bounds applied to every request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest prompt in tokens.
    pub max_prompt_tokens: usize,
    /// Largest generation length (after rounding up to the block length).
    pub max_gen_length: usize,
}

/// A checked request, ready for a worker.
#[derive(Debug, Clone)]
pub struct GenRequest {
    /// The endpoint it came to.
    pub endpoint: Endpoint,
    /// The prompt's ids.
    pub prompt: Vec<u32>,
    /// How to decode (seed included).
    pub params: DecodeParams,
    /// At most this many answer tokens are returned (`max_tokens`; the canvas may be longer).
    pub max_tokens: usize,
    /// Send server-sent events.
    pub stream: bool,
    /// End a stream with a chunk carrying `usage` (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Also send the whole canvas after every step, as `event: canvas`.
    pub stream_canvas: bool,
}

fn field_type(key: &str, what: &str) -> ApiError {
    ApiError::field(key, format!("`{key}` must be {what}"))
}

/// Typed reads of optional fields; `null` counts as absent.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }
    fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| field_type(key, "true or false")))
            .transpose()
    }
    fn uint(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| field_type(key, "a non-negative integer"))
            })
            .transpose()
    }
    fn usize(&self, key: &str) -> Result<Option<usize>, ApiError> {
        Ok(self
            .uint(key)?
            .map(|v| usize::try_from(v).unwrap_or(usize::MAX)))
    }
    fn float(&self, key: &str) -> Result<Option<f64>, ApiError> {
        self.get(key)
            .map(|v| v.as_f64().ok_or_else(|| field_type(key, "a number")))
            .transpose()
    }
    fn str(&self, key: &str) -> Result<Option<&str>, ApiError> {
        self.get(key)
            .map(|v| v.as_str().ok_or_else(|| field_type(key, "a string")))
            .transpose()
    }
}

/// Parse and check a request body against the engine, the server's defaults and the limits.
/// `seed` is used when the request gives none.
pub fn parse(
    endpoint: Endpoint,
    body: &[u8],
    engine: &Engine,
    defaults: &DecodeParams,
    limits: &Limits,
    seed: u64,
) -> Result<GenRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::invalid("the body must be a JSON object"))?;
    let f = Fields(obj);

    if let Some(n) = f.uint("n")?
        && n != 1
    {
        return Err(ApiError::field("n", "only n = 1 is supported"));
    }
    match f.get("stop") {
        None => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(_) => {
            return Err(ApiError::field(
                "stop",
                "stop sequences are not supported; the answer ends at the model's end token",
            ));
        }
    }

    let prompt = match endpoint {
        Endpoint::Chat => chat_prompt(engine, obj)?,
        Endpoint::Completion => completion_prompt(engine, obj)?,
    };
    if prompt.is_empty() {
        return Err(ApiError::invalid("the prompt is empty"));
    }
    if prompt.len() > limits.max_prompt_tokens {
        return Err(ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::invalid(format!(
                "the prompt has {} tokens; this server takes at most {}",
                prompt.len(),
                limits.max_prompt_tokens
            ))
        });
    }
    let vocab = engine.model().config().vocab_size;
    if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
        return Err(ApiError::field(
            "prompt",
            format!("token id {bad} is outside the vocabulary of {vocab}"),
        ));
    }

    let (params, max_tokens) = decode_params(&f, defaults, limits, seed)?;
    params
        .validate(prompt.len(), Some(engine.model().config().seq_len))
        .map_err(|e| match e {
            RuntimeError::InvalidRequest(m) if m.contains("context") => ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::invalid(m)
            },
            RuntimeError::InvalidRequest(m) => ApiError::invalid(m),
            other => ApiError::invalid(other.to_string()),
        })?;

    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Value::Object(o)) => Fields(o).bool("include_usage")?.unwrap_or(false),
        Some(_) => return Err(field_type("stream_options", "an object")),
    };
    Ok(GenRequest {
        endpoint,
        prompt,
        params,
        max_tokens,
        stream: f.bool("stream")?.unwrap_or(false),
        include_usage,
        stream_canvas: f.bool("stream_canvas")?.unwrap_or(false),
    })
}

/// `messages` rendered with the model's chat format.
fn chat_prompt(engine: &Engine, obj: &Map<String, Value>) -> Result<Vec<u32>, ApiError> {
    let msgs = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::field("messages", "`messages` must be an array of messages"))?;
    if msgs.is_empty() {
        return Err(ApiError::field("messages", "`messages` is empty"));
    }
    let mut turns: Vec<(Role, String)> = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = match m.get("role").and_then(Value::as_str) {
            Some("system") | Some("developer") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some(other) => {
                return Err(ApiError::field(
                    &at,
                    format!("role {other:?} is not supported (system, user, assistant)"),
                ));
            }
            None => return Err(ApiError::field(&at, format!("{at} has no `role`"))),
        };
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            // The parts form: [{"type": "text", "text": "..."}].
            Some(Value::Array(parts)) => {
                let mut s = String::new();
                for p in parts {
                    match (
                        p.get("type").and_then(Value::as_str),
                        p.get("text").and_then(Value::as_str),
                    ) {
                        (Some("text"), Some(t)) => s.push_str(t),
                        _ => {
                            return Err(ApiError::field(
                                &at,
                                format!("{at}: only text content parts are supported"),
                            ));
                        }
                    }
                }
                s
            }
            Some(_) => {
                return Err(ApiError::field(
                    &at,
                    format!("{at}.content must be a string or an array of text parts"),
                ));
            }
        };
        turns.push((role, content));
    }
    let view: Vec<(Role, &str)> = turns.iter().map(|(r, c)| (*r, c.as_str())).collect();
    engine.chat_ids(&view).map_err(|e| {
        ApiError::invalid(format!("{e}; send a raw prompt to /v1/completions instead"))
    })
}

/// `prompt`: a string, one string in an array, token ids, or one array of token ids.
fn completion_prompt(engine: &Engine, obj: &Map<String, Value>) -> Result<Vec<u32>, ApiError> {
    let bad = || {
        ApiError::field(
            "prompt",
            "`prompt` must be a string or an array of token ids (one prompt per request)",
        )
    };
    let ids = |a: &[Value]| -> Result<Vec<u32>, ApiError> {
        a.iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(bad)
            })
            .collect()
    };
    match obj.get("prompt") {
        Some(Value::String(s)) => Ok(engine.tokenizer().encode(s)),
        Some(Value::Array(a)) => match a.as_slice() {
            [Value::String(s)] => Ok(engine.tokenizer().encode(s)),
            [Value::Array(inner)] => ids(inner),
            [] => Err(ApiError::invalid("the prompt is empty")),
            _ if a.iter().all(Value::is_number) => ids(a),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
        None => Err(ApiError::field("prompt", "`prompt` is missing")),
    }
}

/// The decoding parameters and the answer's token cap.
fn decode_params(
    f: &Fields<'_>,
    defaults: &DecodeParams,
    limits: &Limits,
    seed: u64,
) -> Result<(DecodeParams, usize), ApiError> {
    let mut p = defaults.clone();
    if let Some(name) = f.str("algorithm")? {
        p.algorithm = Algorithm::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
            ApiError::field(
                "algorithm",
                format!("unknown algorithm {name:?}; one of {}", names.join(", ")),
            )
        })?;
        if p.algorithm.schedule() != defaults.algorithm.schedule() {
            // The default block length belongs to the other schedule.
            p.block_length = None;
        }
    }
    let explicit_block = f.usize("block_length")?;
    if explicit_block.is_some() {
        p.block_length = explicit_block;
    } else if p.algorithm.schedule() == Schedule::Timesteps {
        p.block_length = None;
    }

    let asked = match (
        f.usize("max_tokens")?,
        f.usize("max_completion_tokens")?,
        f.usize("gen_length")?,
    ) {
        (Some(v), _, _) => Some(("max_tokens", v)),
        (None, Some(v), _) => Some(("max_completion_tokens", v)),
        (None, None, Some(v)) => Some(("gen_length", v)),
        _ => None,
    };
    let max_tokens = match asked {
        Some((key, 0)) => return Err(ApiError::field(key, format!("`{key}` must be at least 1"))),
        Some((_, v)) => v,
        None => p.gen_length,
    };
    let gen_length = match (p.algorithm.schedule(), p.block_length) {
        (Schedule::Blocks, Some(b)) if b > 0 && !max_tokens.is_multiple_of(b) => {
            if b < max_tokens || explicit_block.is_some() {
                // Whole blocks: the canvas is rounded up and the answer cut back.
                max_tokens.div_ceil(b) * b
            } else {
                // A request shorter than the default block: one block of its length.
                p.block_length = None;
                max_tokens
            }
        }
        _ => max_tokens,
    };
    if gen_length > limits.max_gen_length {
        let key = asked.map_or("max_tokens", |a| a.0);
        return Err(ApiError::field(
            key,
            format!(
                "{max_tokens} tokens (a canvas of {gen_length}) is more than this server's limit of {}",
                limits.max_gen_length
            ),
        ));
    }
    match f.usize("steps")? {
        Some(s) => p.steps = s,
        None if gen_length != p.gen_length => p.steps = steps_for(defaults, &p, gen_length),
        None => {}
    }
    p.gen_length = gen_length;

    if let Some(t) = f.float("threshold")? {
        // 0 turns the threshold rule off, as on the command line.
        p.threshold = (t != 0.0).then_some(t);
    }
    if let Some(v) = f.float("factor")? {
        p.factor = (v != 0.0).then_some(v);
    }
    if let Some(c) = f.str("cache")? {
        p.cache = CacheMode::from_name(c).ok_or_else(|| {
            ApiError::field(
                "cache",
                format!("unknown cache {c:?}; one of none, prefix, dual"),
            )
        })?;
    }
    if let Some(v) = f.float("temperature")? {
        p.temperature = v;
    }
    if let Some(v) = f.usize("top_k")? {
        p.top_k = (v != 0).then_some(v);
    }
    if let Some(v) = f.float("top_p")? {
        // 1 keeps every token: the same as no nucleus cut.
        p.top_p = (v != 1.0).then_some(v);
    }
    if let Some(v) = f.float("cfg")? {
        p.cfg_scale = v;
    }
    if let Some(v) = f.float("alg_temp")? {
        p.alg_temp = v;
    }
    if let Some(v) = f.float("eps")? {
        p.eps = v;
    }
    if let Some(v) = f.bool("stop_early")? {
        p.stop_early = v;
    }
    p.seed = match f.get("seed") {
        None => seed,
        // OpenAI's seed is any integer; a negative one is taken as its two's complement.
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_i64().map(|i| i as u64))
            .ok_or_else(|| field_type("seed", "an integer"))?,
    };
    Ok((p, max_tokens))
}

/// Steps for a canvas of `gen_length` when the request gives none: the defaults' steps per
/// token, rounded up to a multiple of the number of blocks, at most one step per token.
pub fn steps_for(defaults: &DecodeParams, p: &DecodeParams, gen_length: usize) -> usize {
    let per_token = defaults.steps as f64 / defaults.gen_length.max(1) as f64;
    let mut steps = ((gen_length as f64 * per_token).ceil() as usize).clamp(1, gen_length);
    if p.algorithm.schedule() == Schedule::Blocks {
        let block = p.block_length.unwrap_or(gen_length).clamp(1, gen_length);
        let n_blocks = gen_length.div_ceil(block);
        steps = steps.div_ceil(n_blocks) * n_blocks;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_scale_with_the_length_in_whole_blocks() {
        let d = DecodeParams {
            steps: 32,
            gen_length: 32,
            block_length: Some(32),
            ..DecodeParams::default()
        };
        let p = |b| DecodeParams {
            block_length: b,
            ..d.clone()
        };
        // One step per token in the defaults: one per token at any length.
        assert_eq!(steps_for(&d, &p(Some(8)), 40), 40);
        // Half a step per token, five blocks: rounded up to a multiple of five.
        let half = DecodeParams {
            steps: 16,
            ..d.clone()
        };
        assert_eq!(steps_for(&half, &p(Some(8)), 40), 20);
        assert_eq!(steps_for(&half, &p(Some(8)), 24), 12);
        assert_eq!(steps_for(&half, &p(None), 7), 4);
        // Never more steps than tokens, never zero.
        assert_eq!(steps_for(&d, &p(None), 1), 1);
        let dream = DecodeParams {
            algorithm: Algorithm::Entropy,
            block_length: None,
            ..half
        };
        assert_eq!(steps_for(&dream, &dream, 10), 5);
    }
}
