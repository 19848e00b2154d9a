//! `dlm eval`: quality of a model under given decoding flags — exact-match accuracy on task
//! files, and the masked-diffusion likelihood bound (LLaDA's Monte-Carlo ELBO) on text.

use super::decode_args::{DecodeArgs, settings_text};
use super::{CliResult, json, model_path};
use dlm_runtime::Engine;
use dlm_runtime::chat::Role;
use dlm_runtime::decode::{CacheMode, DecodeParams, Rng};
use dlm_runtime::model::Forward;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Measure answers and likelihood.
///
/// --tasks FILE.jsonl: each line {"prompt": ..., "answer": ...}; the prompt goes through the
/// chat template (unless --raw), the answer must match exactly (surrounding whitespace
/// ignored). Reports accuracy, mean forward passes and tokens/s per file.
///
/// --text FILE: the negative log-likelihood bound of masked diffusion in nats per token: the
/// text is cut into windows of --seq-len tokens; for each window and each of --mc samples a
/// count l is drawn uniformly from 1..=L, l random positions are masked, and the masked
/// tokens' cross-entropy is weighted by L/l (LLaDA's estimator). A fixed --seed makes runs
/// comparable across quantizations and builds.
///
/// Examples:
///   dlm eval --tasks models/demo/tasks/sort.jsonl --tasks models/demo/tasks/add.jsonl
///   dlm eval -m model.dlm --text models/demo/heldout.txt --json
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Model: a `.dlm` file or a Hugging Face folder (default: the shipped demo model).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// Task files (JSON lines with "prompt" and "answer"); repeat for several.
    #[arg(long)]
    tasks: Vec<PathBuf>,
    /// Evaluate at most this many examples per task file.
    #[arg(long)]
    limit: Option<usize>,
    /// Use prompts as plain text, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Text file for the likelihood bound.
    #[arg(long)]
    text: Option<PathBuf>,
    /// Window length in tokens for --text.
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Monte-Carlo samples per window for --text.
    #[arg(long, default_value_t = 8)]
    mc: usize,
    /// At most this many windows of --text.
    #[arg(long, default_value_t = 32)]
    max_windows: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    decode: DecodeArgs,
}

/// Results of one task file.
struct TaskResult {
    name: String,
    n: usize,
    correct: usize,
    nfe: usize,
    layer_forwards: usize,
    query_rows: usize,
    refreshes: usize,
    seconds: f64,
    gen_tokens: usize,
}

/// Result of the likelihood bound.
struct TextResult {
    windows: usize,
    tokens: usize,
    nats_per_token: f64,
}

pub fn run(a: Args) -> CliResult {
    a.decode.init_threads()?;
    if a.tasks.is_empty() && a.text.is_none() {
        return Err("give --tasks FILE.jsonl and/or --text FILE (see dlm eval --help)".into());
    }
    let path = model_path::model_or_demo(&a.model)?;
    let engine = model_path::load_engine(&path, a.decode.device(), a.decode.quant())?;
    let params = a.decode.apply(engine.defaults())?;
    if a.decode.show_defaults {
        print!("{}", settings_text(&path, &engine, &params, false));
        return Ok(());
    }
    let mut tasks = Vec::new();
    for file in &a.tasks {
        tasks.push(eval_tasks(&engine, &params, file, a.limit, a.raw)?);
    }
    let text = match &a.text {
        Some(f) => Some(eval_text(
            &engine,
            f,
            a.seq_len,
            a.mc,
            a.max_windows,
            params.seed,
        )?),
        None => None,
    };
    if a.json {
        print_json(&tasks, text.as_ref(), &params);
    } else {
        print_table(&tasks, text.as_ref(), &params);
    }
    Ok(())
}

fn eval_tasks(
    engine: &Engine,
    params: &DecodeParams,
    file: &Path,
    limit: Option<usize>,
    raw: bool,
) -> Result<TaskResult, Box<dyn Error>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read task file {}: {e}", file.display()))?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut r = TaskResult {
        name,
        n: 0,
        correct: 0,
        nfe: 0,
        layer_forwards: 0,
        query_rows: 0,
        refreshes: 0,
        seconds: 0.0,
        gen_tokens: 0,
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if limit.is_some_and(|l| r.n >= l) {
            break;
        }
        let bad = |what: &str| format!("{}:{}: {what}", file.display(), i + 1);
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(&format!("not JSON: {e}")))?;
        let prompt = v["prompt"]
            .as_str()
            .ok_or_else(|| bad("no string \"prompt\""))?;
        let answer = v["answer"]
            .as_str()
            .ok_or_else(|| bad("no string \"answer\""))?;
        let ids = if raw || engine.chat().is_none() {
            engine.tokenizer().encode(prompt)
        } else {
            engine.chat_ids(&[(Role::User, prompt)])?
        };
        let t = Instant::now();
        let out = engine.generate(&ids, params, &mut |_| true)?;
        r.seconds += t.elapsed().as_secs_f64();
        r.nfe += out.nfe;
        r.layer_forwards += out.layer_forwards;
        r.query_rows += out.query_rows;
        r.refreshes += out.refreshes;
        r.gen_tokens += params.gen_length;
        r.n += 1;
        if engine.answer_text(&out)?.trim() == answer.trim() {
            r.correct += 1;
        }
    }
    if r.n == 0 {
        return Err(format!("task file {} has no examples", file.display()).into());
    }
    Ok(r)
}

/// LLaDA's Monte-Carlo estimate of the masked-diffusion NLL bound, in nats per token.
fn eval_text(
    engine: &Engine,
    file: &Path,
    seq_len: usize,
    mc: usize,
    max_windows: usize,
    seed: u64,
) -> Result<TextResult, Box<dyn Error>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read text file {}: {e}", file.display()))?;
    let model = engine.model();
    let cfg = model.config();
    if seq_len < 2 || seq_len > cfg.seq_len {
        return Err(format!("--seq-len must be in 2..={}", cfg.seq_len).into());
    }
    if mc == 0 {
        return Err("--mc must be at least 1".into());
    }
    let ids = engine.tokenizer().encode(&text);
    let vocab = model.vocab_size();
    let mask = cfg.mask_id;
    let mut rng = Rng::new(seed);
    let (mut total, mut windows) = (0f64, 0usize);
    for window in ids.chunks_exact(seq_len).take(max_windows) {
        let big_l = window.len();
        for _ in 0..mc {
            // l ~ U{1..L}; then l distinct positions by a partial Fisher-Yates shuffle.
            let l = 1 + (rng.next_u64() % big_l as u64) as usize;
            let mut order: Vec<usize> = (0..big_l).collect();
            for i in 0..l {
                let j = i + (rng.next_u64() % (big_l - i) as u64) as usize;
                order.swap(i, j);
            }
            let masked = &order[..l];
            let mut canvas = window.to_vec();
            for &p in masked {
                canvas[p] = mask;
            }
            // Rows whose logits predict each masked position (Dream reads row p - 1).
            let rows: Vec<usize> = masked
                .iter()
                .map(|&p| {
                    if cfg.shift_logits {
                        p.saturating_sub(1)
                    } else {
                        p
                    }
                })
                .collect();
            let logits = model.logits(&canvas, &rows)?;
            let mut nll = 0f64;
            for (row, &p) in logits.chunks(vocab).zip(masked) {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
                let lse = max
                    + row
                        .iter()
                        .map(|&v| (v as f64 - max).exp())
                        .sum::<f64>()
                        .ln();
                nll += lse - row[window[p] as usize] as f64;
            }
            total += nll * big_l as f64 / l as f64 / mc as f64;
        }
        windows += 1;
    }
    if windows == 0 {
        return Err(format!(
            "{} has fewer than --seq-len {seq_len} tokens",
            file.display()
        )
        .into());
    }
    let tokens = windows * seq_len;
    Ok(TextResult {
        windows,
        tokens,
        nats_per_token: total / tokens as f64,
    })
}

fn describe(p: &DecodeParams) -> String {
    // The elastic cache's settings (flags or the file's defaults) decide its accuracy and
    // speed, so a table row says which were used.
    let elastic = if p.cache == CacheMode::Elastic {
        let e = &p.elastic;
        format!(
            " (window {} gamma {} track {}{}{})",
            e.window,
            e.gamma,
            e.track,
            if e.block_cache { "" } else { " no block cache" },
            if e.block_cache && e.prefix_refresh {
                " prefix refresh"
            } else {
                ""
            }
        )
    } else {
        String::new()
    };
    format!(
        "{} steps {} gen {} block {} cache {}{}{}{}",
        p.algorithm.name(),
        p.steps,
        p.gen_length,
        p.effective_block_length(),
        p.cache.name(),
        elastic,
        p.threshold
            .map(|t| format!(" threshold {t}"))
            .unwrap_or_default(),
        p.min_per_step
            .map(|m| format!(" min_per_step {m}"))
            .unwrap_or_default()
    )
}

fn print_table(tasks: &[TaskResult], text: Option<&TextResult>, p: &DecodeParams) {
    if !tasks.is_empty() {
        println!("decoding: {}", describe(p));
        println!(
            "{:<16} {:>5} {:>9} {:>9} {:>9}",
            "task", "n", "accuracy", "mean nfe", "tok/s"
        );
        for t in tasks {
            println!(
                "{:<16} {:>5} {:>8.1}% {:>9.1} {:>9.1}",
                t.name,
                t.n,
                100.0 * t.correct as f64 / t.n as f64,
                t.nfe as f64 / t.n as f64,
                t.gen_tokens as f64 / t.seconds
            );
        }
    }
    if let Some(t) = text {
        println!(
            "text: {:.4} nats/token bound (perplexity ≤ {:.2}) over {} windows, {} tokens",
            t.nats_per_token,
            t.nats_per_token.exp(),
            t.windows,
            t.tokens
        );
    }
}

fn print_json(tasks: &[TaskResult], text: Option<&TextResult>, p: &DecodeParams) {
    let items: Vec<String> = tasks
        .iter()
        .map(|t| {
            format!(
                "{{\"task\":{},\"n\":{},\"correct\":{},\"accuracy\":{},\"mean_nfe\":{},\"tokens_per_s\":{},\"mean_layer_forwards\":{},\"mean_query_rows\":{},\"mean_refreshes\":{}}}",
                json::string(&t.name),
                t.n,
                t.correct,
                json::float(t.correct as f64 / t.n as f64),
                json::float(t.nfe as f64 / t.n as f64),
                json::float(t.gen_tokens as f64 / t.seconds),
                json::float(t.layer_forwards as f64 / t.n as f64),
                json::float(t.query_rows as f64 / t.n as f64),
                json::float(t.refreshes as f64 / t.n as f64)
            )
        })
        .collect();
    let text_json = text.map_or("null".to_string(), |t| {
        format!(
            "{{\"windows\":{},\"tokens\":{},\"nats_per_token\":{}}}",
            t.windows,
            t.tokens,
            json::float(t.nats_per_token)
        )
    });
    println!(
        "{{\"decoding\":{},\"tasks\":[{}],\"text\":{}}}",
        json::string(&describe(p)),
        items.join(","),
        text_json
    );
}
