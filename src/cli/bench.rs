//! `dlm bench`: end-to-end decoding speed of one model, cache modes side by side in one run,
//! with the forward pass broken down by part and the process's peak memory.

use super::decode_args::{DecodeArgs, settings_text};
use super::{CliResult, json, model_path};
use dlm_runtime::decode::{CacheMode, DecodeParams};
use dlm_runtime::model::Timings;
use std::path::PathBuf;
use std::time::Instant;

/// Measure tokens/s and time per step, comparing KV-cache modes in one run.
///
/// Every run decodes the same prompt greedily for the whole canvas (no early stop), so the
/// modes do the same amount of work apart from what their caches save.
///
/// Example:
///   dlm bench -m llada.dlm --gen-length 256 --block-length 32 --caches none,prefix,dual
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Model: a `.dlm` file or a Hugging Face folder (default: the shipped demo model).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// Prompt text (used raw, without the chat template).
    #[arg(
        long,
        default_value = "The ownership rules: each value in Rust has an owner."
    )]
    prompt: String,
    /// Cache modes to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "none,prefix,dual")]
    caches: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    decode: DecodeArgs,
}

struct Row {
    cache: CacheMode,
    seconds: f64,
    nfe: usize,
    breakdown: Timings,
    layer_forwards: usize,
    query_rows: usize,
    refreshes: usize,
    /// Seconds from the start of the run to the end of its first step.
    first_step: f64,
}

pub fn run(mut a: Args) -> CliResult {
    a.decode.init_threads()?;
    let path = model_path::model_or_demo(&a.model)?;
    let t_load = Instant::now();
    let file = model_path::resolve(&path, a.decode.quant())?;
    let engine = model_path::load_engine(&file, a.decode.device(), None)?;
    // Opening, mapping and checking the file (and converting it first, for a checkpoint
    // folder or GGUF file not converted before): what a user waits for before the first step.
    let load_s = t_load.elapsed().as_secs_f64();
    a.decode.no_early_stop = true;
    let mut base = a.decode.apply(engine.defaults())?;
    let caches = a
        .caches
        .iter()
        .map(|name| {
            CacheMode::from_name(name).ok_or_else(|| {
                format!("unknown cache {name:?}; one of none, prefix, dual, elastic")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(note) = fit_blocks(&mut base, &caches, a.decode.block_length.is_some()) {
        eprintln!("{note}");
    }
    if a.decode.show_defaults {
        print!("{}", settings_text(&file, &engine, &base, false));
        return Ok(());
    }
    let prompt = engine.tokenizer().encode(&a.prompt);
    let mut rows = Vec::new();
    for &cache in &caches {
        let mut params = base.clone();
        params.cache = cache;
        params.profile = true;
        let t = Instant::now();
        let mut first_step = None;
        let out = engine.generate(&prompt, &params, &mut |_| {
            first_step.get_or_insert_with(|| t.elapsed().as_secs_f64());
            true
        })?;
        rows.push(Row {
            first_step: first_step.unwrap_or(0.0),
            cache,
            seconds: t.elapsed().as_secs_f64(),
            nfe: out.nfe,
            breakdown: out.timings.unwrap_or_default(),
            layer_forwards: out.layer_forwards,
            query_rows: out.query_rows,
            refreshes: out.refreshes,
        });
    }
    let file_bytes = std::fs::metadata(&file)?.len();
    let peak = peak_rss_bytes();
    let gen_len = base.gen_length as f64;
    if a.json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                let b = &r.breakdown;
                format!(
                    "{{\"cache\":{},\"seconds\":{},\"nfe\":{},\"ms_per_step\":{},\"tokens_per_s\":{},\"matmul_s\":{},\"attention_s\":{},\"head_s\":{},\"other_s\":{},\"sampling_s\":{},\"layer_forwards\":{},\"query_rows\":{},\"refreshes\":{},\"first_step_s\":{}}}",
                    json::string(r.cache.name()),
                    json::float(r.seconds),
                    r.nfe,
                    json::float(1e3 * r.seconds / r.nfe.max(1) as f64),
                    json::float(gen_len / r.seconds),
                    json::float(b.matmul),
                    json::float(b.attention),
                    json::float(b.head),
                    json::float(b.other()),
                    json::float((r.seconds - b.total).max(0.0)),
                    r.layer_forwards,
                    r.query_rows,
                    r.refreshes,
                    json::float(r.first_step)
                )
            })
            .collect();
        println!(
            "{{\"model\":{},\"file_bytes\":{},\"peak_rss_bytes\":{},\"prompt_tokens\":{},\"gen_length\":{},\"block_length\":{},\"steps\":{},\"algorithm\":{},\"threads\":{},\"load_s\":{},\"runs\":[{}]}}",
            json::string(&file.display().to_string()),
            file_bytes,
            peak.map_or("null".into(), |p| p.to_string()),
            prompt.len(),
            base.gen_length,
            base.effective_block_length(),
            base.steps,
            json::string(base.algorithm.name()),
            rayon::current_num_threads(),
            json::float(load_s),
            items.join(",")
        );
        return Ok(());
    }
    println!(
        "{}: {:.1} MiB, prompt {} tokens, gen {} block {} steps {} ({}), {} threads",
        file.display(),
        file_bytes as f64 / 1048576.0,
        prompt.len(),
        base.gen_length,
        base.effective_block_length(),
        base.steps,
        base.algorithm.name(),
        rayon::current_num_threads()
    );
    println!(
        "{:<7} {:>8} {:>5} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "cache", "seconds", "nfe", "ms/step", "tok/s", "matmul", "attn", "head", "other", "sample"
    );
    for r in &rows {
        let b = &r.breakdown;
        let pct = |x: f64| format!("{:.0}%", 100.0 * x / r.seconds);
        println!(
            "{:<7} {:>8.3} {:>5} {:>9.2} {:>9.1} {:>7} {:>7} {:>7} {:>7} {:>7}",
            r.cache.name(),
            r.seconds,
            r.nfe,
            1e3 * r.seconds / r.nfe.max(1) as f64,
            gen_len / r.seconds,
            pct(b.matmul),
            pct(b.attention),
            pct(b.head),
            pct(b.other()),
            pct((r.seconds - b.total).max(0.0))
        );
    }
    if let Some(p) = peak {
        println!("peak RSS {:.1} MiB", p as f64 / 1048576.0);
    }
    if let Some(r) = rows.first() {
        println!(
            "load {:.3} s, then {:.3} s to the end of the first step ({})",
            load_s,
            r.first_step,
            r.cache.name()
        );
    }
    Ok(())
}

/// The process's peak resident set size (Linux `VmHWM`), when the system reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Fast-dLLM's block length for Dream with a cache (its `generation_utils_block.py`).
const DREAM_CACHE_BLOCK: usize = 32;

/// A schedule whose caches have blocks to work on, for every row alike. Dream's own schedule
/// is one block over the whole canvas: the prefix and dual caches would then hold only the
/// prompt, and the `none` row would run Dream's `_sample` while the cached rows run
/// Fast-dLLM's block code. So without `--block-length`, a one-block schedule compared with a
/// cache runs in blocks of 32 (the largest power of two up to 32 that divides the length),
/// steps rounded up to a multiple of the blocks; returns the note saying so.
fn fit_blocks(p: &mut DecodeParams, caches: &[CacheMode], block_given: bool) -> Option<String> {
    let one_block = p.effective_block_length() == p.gen_length;
    let cached = caches.iter().any(|&c| c != CacheMode::None);
    if block_given || !one_block || !cached || p.gen_length <= DREAM_CACHE_BLOCK {
        return None;
    }
    let block = (0..=DREAM_CACHE_BLOCK.trailing_zeros())
        .rev()
        .map(|s| 1usize << s)
        .find(|b| p.gen_length.is_multiple_of(*b))?;
    if block == 1 {
        return None;
    }
    let n_blocks = p.gen_length / block;
    let steps = p.steps.div_ceil(n_blocks) * n_blocks;
    let note = format!(
        "bench: the {} schedule is one block of {}; every row runs blocks of {block} ({n_blocks} blocks, {steps} steps) so the caches have blocks to work on (--block-length {} for one block)",
        p.schedule().name(),
        p.gen_length,
        p.gen_length
    );
    p.block_length = Some(block);
    p.steps = steps;
    Some(note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_runtime::decode::Algorithm;

    #[test]
    fn one_block_schedules_get_blocks_when_caches_are_compared() {
        let dream = DecodeParams {
            algorithm: Algorithm::Entropy,
            gen_length: 128,
            steps: 128,
            block_length: None,
            ..DecodeParams::default()
        };
        let all = [CacheMode::None, CacheMode::Prefix, CacheMode::Dual];
        let mut p = dream.clone();
        assert!(fit_blocks(&mut p, &all, false).is_some());
        assert_eq!((p.block_length, p.steps), (Some(32), 128));
        p.validate(14, None).unwrap();
        // Steps that do not divide by the blocks are rounded up; 48 tokens run blocks of 16.
        let mut p = DecodeParams {
            gen_length: 48,
            steps: 10,
            ..dream.clone()
        };
        fit_blocks(&mut p, &all, false).unwrap();
        assert_eq!((p.block_length, p.steps), (Some(16), 12));
        p.validate(14, None).unwrap();
        // Left alone: a block length given, no cached row, or a schedule with blocks already.
        let mut p = dream.clone();
        assert!(fit_blocks(&mut p, &all, true).is_none());
        assert!(fit_blocks(&mut p, &[CacheMode::None], false).is_none());
        let mut llada = DecodeParams {
            gen_length: 128,
            ..DecodeParams::default()
        };
        assert!(fit_blocks(&mut llada, &all, false).is_none());
        assert_eq!(llada.block_length, Some(32));
    }
}
