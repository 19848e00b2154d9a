//! The JSON shapes of OpenAI's completion responses and stream chunks.

use crate::request::Endpoint;
use crate::worker::{CanvasView, Summary};
use serde_json::{Value, json};

/// What every response and chunk of one request repeats.
#[derive(Debug, Clone)]
pub struct Meta {
    /// `chatcmpl-N` or `cmpl-N`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model name echoed back (the request's, or the served model's).
    pub model: String,
    /// Which endpoint.
    pub endpoint: Endpoint,
}

fn usage(s: &Summary) -> Value {
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "total_tokens": s.prompt_tokens + s.completion_tokens,
    })
}

/// The diffusion run's own counters, beside OpenAI's fields.
fn dlm(s: &Summary) -> Value {
    json!({
        "nfe": s.nfe,
        "steps": s.steps,
        "gen_length": s.gen_length,
        "seed": s.seed,
        "seconds": s.seconds,
    })
}

fn object(m: &Meta, chunk: bool) -> &'static str {
    match (m.endpoint, chunk) {
        (Endpoint::Chat, false) => "chat.completion",
        (Endpoint::Chat, true) => "chat.completion.chunk",
        (Endpoint::Completion, _) => "text_completion",
    }
}

/// A whole (non-streamed) response.
pub fn response(m: &Meta, text: &str, s: &Summary) -> Value {
    let choice = match m.endpoint {
        Endpoint::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": s.finish_reason,
        }),
        Endpoint::Completion => json!({
            "index": 0,
            "text": text,
            "logprobs": null,
            "finish_reason": s.finish_reason,
        }),
    };
    json!({
        "id": m.id,
        "object": object(m, false),
        "created": m.created,
        "model": m.model,
        "choices": [choice],
        "usage": usage(s),
        "dlm": dlm(s),
    })
}

/// A stream chunk carrying `text` (the chat form opens with the assistant's role).
pub fn chunk(m: &Meta, text: &str, first: bool) -> Value {
    let choice = match m.endpoint {
        Endpoint::Chat if first => json!({
            "index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null,
        }),
        Endpoint::Chat => json!({
            "index": 0, "delta": {"content": text}, "finish_reason": null,
        }),
        Endpoint::Completion => json!({
            "index": 0, "text": text, "logprobs": null, "finish_reason": null,
        }),
    };
    json!({
        "id": m.id, "object": object(m, true), "created": m.created, "model": m.model,
        "choices": [choice],
    })
}

/// The chunk that ends the choice with its finish reason.
pub fn final_chunk(m: &Meta, s: &Summary) -> Value {
    let choice = match m.endpoint {
        Endpoint::Chat => json!({"index": 0, "delta": {}, "finish_reason": s.finish_reason}),
        Endpoint::Completion => json!({
            "index": 0, "text": "", "logprobs": null, "finish_reason": s.finish_reason,
        }),
    };
    json!({
        "id": m.id, "object": object(m, true), "created": m.created, "model": m.model,
        "choices": [choice], "dlm": dlm(s),
    })
}

/// The usage chunk of `stream_options.include_usage`: no choices.
pub fn usage_chunk(m: &Meta, s: &Summary) -> Value {
    json!({
        "id": m.id, "object": object(m, true), "created": m.created, "model": m.model,
        "choices": [], "usage": usage(s),
    })
}

/// The data of an `event: canvas`.
pub fn canvas(m: &Meta, c: &CanvasView) -> Value {
    json!({
        "id": m.id,
        "step": c.step,
        "planned_steps": c.planned_steps,
        "masks_left": c.masks_left,
        "nfe": c.nfe,
        "canvas": c.text,
    })
}
