//! One loaded model ready to answer: weights, tokenizer, chat format and decoding defaults,
//! with the prompt → ids → decode → text path that the CLI and the C ABI share.

use crate::RuntimeError;
use crate::chat::{ChatTemplate, Role};
use crate::decode::{self, Algorithm, DecodeParams, DecodeTokens, GenerateOutput, StepEvent};
use crate::model::{Model, ModelConfig};
use crate::tokenizer::Tokenizer;
use dlm_formats::DlmFile;
use dlm_formats::keys::{diffusion, tokenizer as tk};
use std::path::Path;

/// A model, its tokenizer and its defaults. Read-only: share it across threads.
#[derive(Debug)]
pub struct Engine {
    model: Model,
    tokenizer: Tokenizer,
    chat: Option<ChatTemplate>,
    tokens: DecodeTokens,
    defaults: DecodeParams,
}

impl Engine {
    /// Map and load the `.dlm` file at `path`.
    pub fn open(path: &Path) -> Result<Self, RuntimeError> {
        Self::new(Model::open(path)?)
    }

    /// Wrap a loaded model, reading its tokenizer, chat format and defaults.
    pub fn new(model: Model) -> Result<Self, RuntimeError> {
        let file = model.file();
        let tokenizer = Tokenizer::from_file(file)?;
        let chat = ChatTemplate::from_file(file)?;
        let tokens = decode_tokens(file, model.config())?;
        let defaults = default_params(file)?;
        Ok(Engine {
            model,
            tokenizer,
            chat,
            tokens,
            defaults,
        })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat format, when the file has one.
    pub fn chat(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
    }

    /// The special tokens the decoder uses.
    pub fn decode_tokens(&self) -> &DecodeTokens {
        &self.tokens
    }

    /// Decoding parameters from the file's `diffusion.*` keys.
    pub fn defaults(&self) -> &DecodeParams {
        &self.defaults
    }

    /// The ids of a conversation rendered with the chat format, ending with the opening of
    /// the assistant's turn. An error when the file has no chat format.
    pub fn chat_ids(&self, messages: &[(Role, &str)]) -> Result<Vec<u32>, RuntimeError> {
        let chat = self.chat.as_ref().ok_or_else(|| {
            RuntimeError::Unsupported("this model file has no chat template".into())
        })?;
        Ok(self.tokenizer.encode(&chat.render(messages, true)))
    }

    /// Generate after `prompt` (ids), checking the request against the model's context.
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &DecodeParams,
        on_step: &mut dyn FnMut(&StepEvent<'_>) -> bool,
    ) -> Result<GenerateOutput, RuntimeError> {
        if prompt.is_empty() {
            return Err(RuntimeError::InvalidRequest("the prompt is empty".into()));
        }
        params.validate(prompt.len(), Some(self.model.config().seq_len))?;
        decode::generate(&self.model, &self.tokens, prompt, params, on_step)
    }

    /// The answer of a run as text (up to the first stop token, special tokens left out).
    pub fn answer_text(&self, out: &GenerateOutput) -> Result<String, RuntimeError> {
        self.tokenizer.decode(out.answer_ids(), true)
    }
}

fn decode_tokens(file: &DlmFile, cfg: &ModelConfig) -> Result<DecodeTokens, RuntimeError> {
    let eos = file.get_u32(tk::EOS_ID)?;
    let mut stop_ids = vec![eos];
    if file.meta_get(tk::EOT_ID).is_some() {
        let eot = file.get_u32(tk::EOT_ID)?;
        if eot != eos {
            stop_ids.push(eot);
        }
    }
    Ok(DecodeTokens {
        mask_id: cfg.mask_id,
        stop_ids,
        pad_id: Some(file.get_u32_or(tk::PAD_ID, eos)?),
        shift_logits: cfg.shift_logits,
    })
}

fn default_params(file: &DlmFile) -> Result<DecodeParams, RuntimeError> {
    let mut p = DecodeParams::default();
    let name = file.get_str_or(diffusion::ALGORITHM, p.algorithm.name())?;
    p.algorithm = Algorithm::from_name(name).ok_or_else(|| {
        RuntimeError::Unsupported(format!(
            "default algorithm {name:?} in {}",
            diffusion::ALGORITHM
        ))
    })?;
    p.gen_length = file.get_u32_or(diffusion::GEN_LENGTH, p.gen_length as u32)? as usize;
    // A default of more steps than tokens (Dream's generation_config says 512) only repeats
    // forward passes that commit nothing; one token per step is the most a schedule uses.
    p.steps = (file.get_u32_or(diffusion::STEPS, p.steps as u32)? as usize).min(p.gen_length);
    let block = file.get_u32_or(diffusion::BLOCK_LENGTH, p.gen_length as u32)? as usize;
    p.block_length = match p.algorithm.schedule() {
        decode::Schedule::Blocks => Some(block),
        decode::Schedule::Timesteps => None,
    };
    let threshold = file.get_f32_or(diffusion::THRESHOLD, 0.0)?;
    // The f64 nearest the f32's shortest decimal (0.9, not 0.8999999761581421): the value the
    // checkpoint's generation_config.json wrote, and the one `--threshold 0.9` gives.
    let threshold = threshold
        .to_string()
        .parse::<f64>()
        .unwrap_or(threshold as f64);
    p.threshold = (threshold > 0.0).then_some(threshold);
    // A minimum per step only means something under a threshold (a step-distilled model's
    // few-step rule); without one the file's schedule is the fixed count per step.
    let min_per_step = file.get_u32_or(diffusion::MIN_PER_STEP, 0)? as usize;
    p.min_per_step = (min_per_step > 1 && p.threshold.is_some()).then_some(min_per_step);
    p.temperature = file.get_f32_or(diffusion::TEMPERATURE, 0.0)? as f64;
    p.eps = file.get_f32_or(diffusion::EPS, 1e-3)? as f64;
    let e = &mut p.elastic;
    e.window = file.get_u32_or(diffusion::ELASTIC_WINDOW, e.window as u32)? as usize;
    e.gamma = file.get_f32_or(diffusion::ELASTIC_GAMMA, e.gamma as f32)? as f64;
    e.track = file.get_u32_or(diffusion::ELASTIC_TRACK, e.track as u32)? as usize;
    Ok(p)
}
