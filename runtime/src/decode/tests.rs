//! Decoder tests on hand-made models: schedules, rules, caches, stops and the callback.

use super::*;
use crate::model::{
    Attend, Forward, KvCache, LayerAttention, Output, Positions, Request, Response,
};
use std::cell::RefCell;

const VOCAB: usize = 64;
const MASK: u32 = 63;
const EOS: u32 = 62;

/// One recorded forward call.
#[derive(Debug, Clone)]
struct Call {
    start: usize,
    len: usize,
    attend: &'static str,
    stored: bool,
    want: Vec<usize>,
}

type RowFn = Box<dyn Fn(usize, &[u32], usize) -> Vec<f32>>;

/// A fake model: row logits from `row(abs_pos, span_tokens, span_start)`.
struct Fake {
    row: RowFn,
    calls: RefCell<Vec<Call>>,
}

impl Fake {
    fn new(row: impl Fn(usize, &[u32], usize) -> Vec<f32> + 'static) -> Self {
        Fake {
            row: Box::new(row),
            calls: RefCell::new(Vec::new()),
        }
    }
}

impl Forward for Fake {
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn new_cache(&self, len: usize, hidden: bool) -> Result<KvCache, RuntimeError> {
        Ok(KvCache::new(len, hidden, ()))
    }
    fn run(&self, req: Request<'_>, cache: Option<&mut KvCache>) -> Result<Response, RuntimeError> {
        let start = match req.positions {
            Positions::Run(s) => s,
            Positions::List(_) => panic!("the decoders ask for contiguous spans"),
        };
        // Prefix and dual spans both attend to every cached position outside the span;
        // they differ only in the span, which the tests check.
        let attend = match req.attend {
            Attend::Span => "span",
            Attend::Cache => {
                assert!(cache.is_some(), "a cached pass without a cache");
                "cache"
            }
        };
        self.calls.borrow_mut().push(Call {
            start,
            len: req.tokens.len(),
            attend,
            stored: req.store,
            want: req.rows.to_vec(),
        });
        let mut logits = Vec::new();
        for &r in req.rows {
            assert!(
                r < req.tokens.len(),
                "row {r} outside span of {}",
                req.tokens.len()
            );
            logits.extend((self.row)(start + r, req.tokens, start));
        }
        Ok(match req.output {
            Output::Logits => Response {
                logits,
                ..Response::default()
            },
            Output::Propose { spec, rng } => Response {
                proposals: propose_rows(&logits, VOCAB, &spec, rng),
                ..Response::default()
            },
        })
    }
}

/// The token position `p` prefers, never the mask or EOS.
fn pref(p: usize) -> u32 {
    ((p * 7 + 3) % 60) as u32
}

/// Logits where position `p` prefers `pref(p)` with strength `level(p)`.
fn peaked(p: usize, level: f32) -> Vec<f32> {
    let mut v = vec![0.0; VOCAB];
    v[pref(p) as usize] = level;
    v
}

/// A confidence that varies with position, distinct for the positions used here.
fn level(p: usize) -> f32 {
    1.0 + ((p * 37) % 23) as f32 * 0.25
}

fn tokens(shift: bool) -> DecodeTokens {
    DecodeTokens {
        mask_id: MASK,
        stop_ids: vec![EOS],
        pad_id: None,
        shift_logits: shift,
    }
}

fn params(steps: usize, gen_length: usize, block: usize) -> DecodeParams {
    DecodeParams {
        steps,
        gen_length,
        block_length: Some(block),
        stop_early: false,
        ..DecodeParams::default()
    }
}

/// One step as the callback saw it: canvas, committed positions, nfe.
type Seen = (Vec<u32>, Vec<usize>, usize);

/// Run and record every step's canvas.
fn run_recorded(
    model: &Fake,
    tok: &DecodeTokens,
    prompt: &[u32],
    p: &DecodeParams,
) -> (GenerateOutput, Vec<Seen>) {
    let mut seen = Vec::new();
    let out = generate(model, tok, prompt, p, &mut |e: &StepEvent<'_>| {
        seen.push((e.canvas.to_vec(), e.committed.to_vec(), e.nfe));
        true
    })
    .expect("generate");
    (out, seen)
}

const PROMPT: [u32; 3] = [5, 6, 7];

#[test]
fn llada_schedule_commits_most_confident_within_block() {
    let model = Fake::new(|p, _, _| peaked(p, level(p)));
    let p = params(4, 8, 4);
    let (out, seen) = run_recorded(&model, &tokens(false), &PROMPT, &p);
    assert_eq!(out.nfe, 4);
    assert_eq!(out.steps, 4);
    assert_eq!(seen.len(), 4);
    for (k, (_, committed, _)) in seen.iter().enumerate() {
        assert_eq!(committed.len(), 2, "step {k}");
        let block = k / 2;
        let (start, end) = (3 + block * 4, 3 + block * 4 + 4);
        assert!(
            committed.iter().all(|&c| c >= start && c < end),
            "step {k}: {committed:?}"
        );
    }
    // Step 0 takes the two most confident of positions 3..7.
    let mut first: Vec<usize> = (3..7).collect();
    first.sort_by(|&a, &b| level(b).total_cmp(&level(a)).then(a.cmp(&b)));
    let mut got = seen[0].1.clone();
    got.sort();
    let mut want = first[..2].to_vec();
    want.sort();
    assert_eq!(got, want);
    // Final canvas: prompt kept, every position its preferred token.
    assert_eq!(&out.canvas[..3], &PROMPT);
    for q in 3..11 {
        assert_eq!(out.canvas[q], pref(q));
    }
    assert_eq!(out.answer, 3..11);
}

#[test]
fn committed_tokens_never_change() {
    let model = Fake::new(|p, toks, start| {
        // Logits depend on the whole span so proposals shift as the canvas fills.
        let s: u32 = toks.iter().sum::<u32>() + start as u32;
        let mut v = vec![0.0; VOCAB];
        v[((p as u32 * 13 + s) % 60) as usize] = level(p);
        v
    });
    for steps in [2, 4, 6, 12] {
        let p = params(steps, 12, 6);
        let (out, seen) = run_recorded(&model, &tokens(false), &PROMPT, &p);
        let mut fixed: Vec<Option<u32>> = vec![None; out.canvas.len()];
        for (canvas, committed, _) in &seen {
            for (q, &t) in canvas.iter().enumerate() {
                if let Some(f) = fixed[q] {
                    assert_eq!(f, t, "position {q} changed");
                }
                if t != MASK {
                    fixed[q] = Some(t);
                }
            }
            for c in committed {
                assert!(*c >= 3);
            }
        }
        assert!(!out.canvas.contains(&MASK));
    }
}

#[test]
fn ties_go_to_the_lowest_position() {
    let model = Fake::new(|_, _, _| {
        let mut v = vec![0.0; VOCAB];
        v[9] = 2.0;
        v
    });
    let p = params(4, 4, 4);
    let (_, seen) = run_recorded(&model, &tokens(false), &PROMPT, &p);
    let order: Vec<usize> = seen.iter().flat_map(|s| s.1.clone()).collect();
    assert_eq!(order, vec![3, 4, 5, 6]);
}

#[test]
fn one_mask_left() {
    let model = Fake::new(|p, _, _| peaked(p, 3.0));
    let p = params(1, 1, 1);
    let out = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    assert_eq!(out.canvas, vec![5, 6, 7, pref(3)]);
    assert_eq!(out.nfe, 1);
    // More steps than masks: the block finishes after one step.
    let p = params(4, 1, 1);
    let out = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    assert_eq!(out.nfe, 1);
}

#[test]
fn only_wanted_rows_are_requested() {
    let model = Fake::new(|p, _, _| peaked(p, level(p)));
    let p = params(4, 8, 4);
    generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    let calls = model.calls.borrow();
    assert_eq!(calls.len(), 4);
    for c in calls.iter() {
        assert_eq!((c.start, c.len, c.attend, c.stored), (0, 11, "span", false));
        assert!(c.want.iter().all(|&w| w >= 3));
    }
    assert_eq!(calls[0].want, vec![3, 4, 5, 6]);
    assert_eq!(calls[1].want.len(), 2);
    assert_eq!(calls[2].want, vec![7, 8, 9, 10]);
}

#[test]
fn cache_calls_have_the_right_spans() {
    let model = Fake::new(|p, _, _| peaked(p, level(p)));
    let mut p = params(8, 8, 4);
    p.cache = CacheMode::Prefix;
    generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    {
        let calls = model.calls.borrow();
        assert_eq!(calls.len(), 8);
        assert_eq!(
            (
                calls[0].start,
                calls[0].len,
                calls[0].attend,
                calls[0].stored
            ),
            (0, 11, "span", true)
        );
        assert_eq!(
            (
                calls[1].start,
                calls[1].len,
                calls[1].attend,
                calls[1].stored
            ),
            (3, 8, "cache", false)
        );
        assert_eq!(calls[1].want.len(), 3);
        assert!(calls[1].want.iter().all(|&w| w < 4));
        assert_eq!(
            (calls[4].start, calls[4].len, calls[4].stored),
            (0, 11, true)
        );
        assert_eq!(
            (calls[5].start, calls[5].len, calls[5].attend),
            (7, 4, "cache")
        );
    }
    model.calls.borrow_mut().clear();
    p.cache = CacheMode::Dual;
    generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    let calls = model.calls.borrow();
    assert_eq!(
        (
            calls[1].start,
            calls[1].len,
            calls[1].attend,
            calls[1].stored
        ),
        (3, 4, "cache", false)
    );
    assert_eq!(
        (calls[5].start, calls[5].len, calls[5].attend),
        (7, 4, "cache")
    );
}

#[test]
fn three_caches_agree_when_logits_ignore_the_cache() {
    for shift in [false, true] {
        let model = Fake::new(|p, _, _| peaked(p, level(p)));
        let mut results = Vec::new();
        for cache in [CacheMode::None, CacheMode::Prefix, CacheMode::Dual] {
            for threshold in [None, Some(0.5)] {
                let mut p = params(12, 12, 4);
                p.cache = cache;
                p.threshold = threshold;
                let out =
                    generate(&model, &tokens(shift), &PROMPT, &p, &mut |_| true).expect("generate");
                results.push((threshold, out.canvas, out.nfe));
            }
        }
        for r in &results[2..] {
            let base = if r.0.is_none() {
                &results[0]
            } else {
                &results[1]
            };
            assert_eq!(r.1, base.1, "shift {shift}: canvas");
            if r.0.is_none() {
                assert_eq!(r.2, base.2, "shift {shift}: nfe");
            }
        }
        assert_eq!(results[0].2, 12);
    }
}

#[test]
fn shifted_logits_come_from_the_previous_row() {
    let model = Fake::new(|p, _, _| peaked(p, level(p)));
    let p = params(4, 4, 4);
    let out = generate(&model, &tokens(true), &PROMPT, &p, &mut |_| true).expect("generate");
    for q in 3..7 {
        assert_eq!(out.canvas[q], pref(q - 1), "position {q}");
    }
    // Empty prompt: position 0 reads row 0, like position 1.
    let out = generate(&model, &tokens(true), &[], &p, &mut |_| true).expect("generate");
    assert_eq!(out.canvas, vec![pref(0), pref(0), pref(1), pref(2)]);
}

#[test]
fn threshold_commits_all_confident_and_always_one() {
    // Very peaked logits: probability ≈ 1 everywhere.
    let model = Fake::new(|p, _, _| peaked(p, 40.0));
    let mut p = params(8, 8, 4);
    p.threshold = Some(0.9);
    let out = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    assert_eq!(out.nfe, 2);
    assert_eq!(out.steps, 2);
    // With a cache, a block completed by its full first step still gets one cached step that
    // commits nothing, as Fast-dLLM's loops do.
    for cache in [CacheMode::Prefix, CacheMode::Dual] {
        p.cache = cache;
        let (out, seen) = run_recorded(&model, &tokens(false), &PROMPT, &p);
        assert_eq!(out.nfe, 4, "{cache:?}");
        assert_eq!(
            seen.iter().map(|s| s.1.len()).collect::<Vec<_>>(),
            vec![4, 0, 4, 0]
        );
    }
    p.cache = CacheMode::None;
    // tau = 1 with probabilities below 1: one per step.
    let model = Fake::new(|p, _, _| peaked(p, level(p)));
    p.threshold = Some(1.0);
    let out = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    assert_eq!(out.nfe, 8);
    for q in 3..11 {
        assert_eq!(out.canvas[q], pref(q));
    }
}

#[test]
fn threshold_with_a_minimum_bounds_the_steps_of_every_cache() {
    // Confidences below tau everywhere: Fast-dLLM's rule would take one step per token; with
    // a minimum of 2 per step a block of 4 takes 2 steps, committing the 2 most confident.
    let model = Fake::new(|p, _, _| peaked(p, level(p)));
    let mut p = params(8, 8, 4);
    p.threshold = Some(1.0);
    p.min_per_step = Some(2);
    let (out, seen) = run_recorded(&model, &tokens(false), &PROMPT, &p);
    assert_eq!(out.nfe, 4);
    assert_eq!(
        seen.iter().map(|s| s.1.len()).collect::<Vec<_>>(),
        vec![2, 2, 2, 2]
    );
    // The same commits as the fixed schedule of 2 per step (top-2 by confidence).
    let mut fixed = params(4, 8, 4);
    fixed.cache = CacheMode::None;
    let (fixed_out, fixed_seen) = run_recorded(&model, &tokens(false), &PROMPT, &fixed);
    assert_eq!(out.canvas, fixed_out.canvas);
    assert_eq!(
        seen.iter().map(|s| s.1.clone()).collect::<Vec<_>>(),
        fixed_seen.iter().map(|s| s.1.clone()).collect::<Vec<_>>()
    );
    for cache in [CacheMode::Prefix, CacheMode::Dual] {
        p.cache = cache;
        let (c_out, c_seen) = run_recorded(&model, &tokens(false), &PROMPT, &p);
        assert_eq!(c_out.canvas, out.canvas, "{cache:?}");
        assert_eq!(c_out.nfe, 4, "{cache:?}");
        assert!(c_seen.iter().all(|s| s.1.len() == 2), "{cache:?}");
    }
    // Confident positions beyond the minimum are still committed together.
    let sure = Fake::new(|p, _, _| peaked(p, 40.0));
    p.cache = CacheMode::None;
    p.threshold = Some(0.9);
    let out = generate(&sure, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    assert_eq!(out.nfe, 2);
}

#[test]
fn factor_rule_runs_and_finishes_blocks() {
    let model = Fake::new(|p, _, _| peaked(p, 40.0));
    let mut p = params(8, 8, 4);
    p.factor = Some(1.0);
    let out = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    assert_eq!(out.nfe, 2);
    let model = Fake::new(|p, _, _| peaked(p, 0.1));
    let out = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    // Low confidences: one per step, except that the last two of a block go together.
    assert_eq!(out.nfe, 6);
}

#[test]
fn random_remasking_and_sampling_repeat_with_a_seed() {
    let model = Fake::new(|p, _, _| peaked(p, 1.0));
    let mut p = params(8, 8, 8);
    p.algorithm = Algorithm::Random;
    p.temperature = 1.0;
    let a = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    let b = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    assert_eq!(a, b);
    let mut outs = std::collections::HashSet::new();
    for seed in 0..8 {
        p.seed = seed;
        outs.insert(
            generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true)
                .expect("generate")
                .canvas,
        );
    }
    assert!(outs.len() > 1);
}

#[test]
fn cfg_uses_an_unconditional_pass_with_the_prompt_masked() {
    // Conditional: token 1 slightly ahead of 2; unconditional: token 2 far ahead.
    // cfg 1: u + 2(c - u) → token 1 wins; without cfg token 1 also wins; cfg pushes margin.
    let model = Fake::new(|_, toks, start| {
        let uncond = start == 0 && toks[0] == MASK;
        let mut v = vec![0.0; VOCAB];
        if uncond {
            v[2] = 3.0;
        } else {
            v[1] = 1.0;
            v[2] = 1.5;
        }
        v
    });
    let mut p = params(2, 2, 2);
    let out = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    assert_eq!(&out.canvas[3..], &[2, 2]);
    assert_eq!(out.nfe, 2);
    p.cfg_scale = 1.0;
    let out = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    // u + 2(c - u): token 1 → 0 + 2 = 2, token 2 → 3 + 2(1.5 - 3) = 0.
    assert_eq!(&out.canvas[3..], &[1, 1]);
    assert_eq!(out.nfe, 4);
    p.cache = CacheMode::Dual;
    assert!(matches!(
        generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true),
        Err(RuntimeError::InvalidRequest(_))
    ));
}

#[test]
fn dream_timesteps_skip_empty_steps_and_take_the_best() {
    let model = Fake::new(|p, _, _| peaked(p, level(p)));
    let p = DecodeParams {
        algorithm: Algorithm::MaskgitPlus,
        steps: 16,
        gen_length: 16,
        block_length: None,
        stop_early: false,
        ..DecodeParams::default()
    };
    let (out, seen) = run_recorded(&model, &tokens(true), &PROMPT, &p);
    assert_eq!(seen.len(), 16);
    // Step 0 commits nothing (int(16 * 0.0624375) = 0) and makes no forward pass.
    assert!(seen[0].1.is_empty());
    assert_eq!(seen[0].2, 0);
    assert_eq!(out.steps, 16);
    let expected_nfe = seen.iter().filter(|s| !s.1.is_empty()).count();
    assert_eq!(out.nfe, expected_nfe);
    for q in 3..19 {
        assert_eq!(out.canvas[q], pref(q - 1));
    }
    // Each step commits the most confident remaining masks.
    for (canvas, committed, _) in &seen {
        let _ = canvas;
        for w in committed.windows(2) {
            assert!(level(w[0] - 1) >= level(w[1] - 1));
        }
    }
}

#[test]
fn dream_rules_and_origin_finish() {
    for alg in [
        Algorithm::Origin,
        Algorithm::MaskgitPlus,
        Algorithm::TopkMargin,
        Algorithm::Entropy,
    ] {
        for alg_temp in [0.0, 0.5] {
            let model = Fake::new(|p, _, _| peaked(p, level(p)));
            let p = DecodeParams {
                algorithm: alg,
                steps: 5,
                gen_length: 12,
                block_length: None,
                alg_temp,
                stop_early: false,
                ..DecodeParams::default()
            };
            let out =
                generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
            assert!(!out.canvas.contains(&MASK), "{alg:?}");
            for q in 3..15 {
                assert_eq!(out.canvas[q], pref(q));
            }
            assert!(out.nfe <= 5);
        }
    }
}

#[test]
fn cancel_stops_with_cancelled() {
    let model = Fake::new(|p, _, _| peaked(p, level(p)));
    let p = params(8, 8, 4);
    let mut n = 0;
    let r = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| {
        n += 1;
        n < 3
    });
    assert!(matches!(r, Err(RuntimeError::Cancelled)));
    assert_eq!(n, 3);
}

#[test]
fn early_stop_when_the_answer_is_final() {
    // Position 5 says EOS, most confidently; 3 and 4 next; the rest least.
    let model = Fake::new(|p, _, _| {
        if p == 5 {
            let mut v = vec![0.0; VOCAB];
            v[EOS as usize] = 9.0;
            v
        } else {
            peaked(p, if p < 5 { 5.0 } else { 1.0 })
        }
    });
    let mut p = params(8, 8, 8);
    p.stop_early = true;
    let out = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    assert!(out.stopped_early);
    assert_eq!(out.nfe, 3);
    assert_eq!(out.answer, 3..5);
    assert_eq!(out.answer_ids(), &[pref(3), pref(4)]);
    assert!(out.canvas[5..].iter().all(|&t| t == EOS));
    // Without early stop the answer is the same.
    p.stop_early = false;
    let full = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    assert!(!full.stopped_early);
    assert_eq!(full.nfe, 8);
    assert_eq!(full.answer_ids(), out.answer_ids());
}

#[test]
fn a_model_that_proposes_masks_ends_with_an_error() {
    let model = Fake::new(|_, _, _| {
        let mut v = vec![0.0; VOCAB];
        v[MASK as usize] = 5.0;
        v
    });
    let mut p = params(2, 2, 2);
    p.threshold = Some(0.5);
    let r = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true);
    assert!(matches!(r, Err(RuntimeError::Unsupported(_))));
}

#[test]
fn validation_rejects_bad_requests() {
    let ok = params(8, 8, 4);
    assert!(ok.validate(3, Some(11)).is_ok());
    let bad = |p: DecodeParams, prompt: usize, max: Option<usize>| {
        let e = p
            .validate(prompt, max)
            .expect_err(&format!("should be rejected: {p:?}"));
        assert!(matches!(e, RuntimeError::InvalidRequest(_)), "{e}");
        e.to_string()
    };
    assert!(bad(ok.clone(), 4, Some(11)).contains("context"));
    assert!(bad(params(8, 8, 3), 3, None).contains("divide"));
    assert!(bad(params(3, 8, 4), 3, None).contains("divisible"));
    assert!(bad(params(0, 8, 4), 3, None).contains("steps"));
    assert!(bad(params(8, 0, 4), 3, None).contains("gen_length"));
    assert!(bad(params(8, 8, 0), 3, None).contains("block_length"));
    for t in [0.0, -0.5, 1.5, f64::NAN] {
        let mut p = ok.clone();
        p.threshold = Some(t);
        assert!(bad(p, 3, None).contains("threshold"));
    }
    let mut p = ok.clone();
    p.threshold = Some(1.0);
    assert!(p.validate(3, None).is_ok());
    let mut p = ok.clone();
    p.top_p = Some(0.0);
    bad(p, 3, None);
    let mut p = ok.clone();
    p.top_k = Some(0);
    bad(p, 3, None);
    let mut p = ok.clone();
    p.temperature = -1.0;
    bad(p, 3, None);
    // Dream's rules run in blocks and with every cache (Fast-dLLM's Dream code).
    let mut p = ok.clone();
    p.algorithm = Algorithm::Entropy;
    assert!(p.validate(3, None).is_ok());
    p.block_length = None;
    assert!(p.validate(3, None).is_ok());
    p.cache = CacheMode::Prefix;
    assert!(p.validate(3, None).is_ok());
    p.threshold = Some(0.9);
    assert!(p.validate(3, None).is_ok());
    p.threshold = None;
    p.cache = CacheMode::None;
    p.eps = 0.0;
    assert!(bad(p, 3, None).contains("eps"));
    // Combinations that cannot work name both sides.
    let mut p = ok.clone();
    p.algorithm = Algorithm::Origin;
    p.schedule = Some(Schedule::Blocks);
    assert!(bad(p.clone(), 3, None).contains("blocks schedule"));
    p.schedule = None;
    assert!(p.validate(3, None).is_ok());
    p.threshold = Some(0.9);
    assert!(bad(p, 3, None).contains("origin"));
    let mut p = ok.clone();
    p.alg_temp = 0.5;
    p.factor = Some(1.0);
    assert!(bad(p, 3, None).contains("alg_temp"));
    let mut p = ok.clone();
    p.threshold = Some(0.9);
    p.factor = Some(1.0);
    bad(p, 3, None);
    let mut p = ok.clone();
    p.min_per_step = Some(2);
    assert!(bad(p.clone(), 3, None).contains("threshold"));
    p.threshold = Some(0.9);
    assert!(p.validate(3, None).is_ok());
    p.min_per_step = Some(0);
    assert!(bad(p, 3, None).contains("min_per_step"));
}

#[test]
fn bad_ids_are_rejected() {
    let model = Fake::new(|p, _, _| peaked(p, 1.0));
    let p = params(2, 2, 2);
    let r = generate(&model, &tokens(false), &[5, 99], &p, &mut |_| true);
    assert!(matches!(r, Err(RuntimeError::InvalidRequest(_))));
    let mut t = tokens(false);
    t.mask_id = 64;
    let r = generate(&model, &t, &PROMPT, &p, &mut |_| true);
    assert!(matches!(r, Err(RuntimeError::InvalidRequest(_))));
}

#[test]
fn names_round_trip() {
    for a in Algorithm::ALL {
        assert_eq!(Algorithm::from_name(a.name()), Some(a));
    }
    for c in [CacheMode::None, CacheMode::Prefix, CacheMode::Dual] {
        assert_eq!(CacheMode::from_name(c.name()), Some(c));
    }
    assert_eq!(Algorithm::from_name("greedy"), None);
}

/// A three-layer fake for the elastic cache: its tracked token is position 0; layers 0 and 1
/// attend to it the same way at every pass, layer 2 swings between passes, so every window
/// pass after the first sees a drift at layer 2.
struct Drifting {
    calls: RefCell<Vec<(bool, usize, usize)>>, // (window pass, from_layer, span len)
}

impl Forward for Drifting {
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn n_layers(&self) -> usize {
        3
    }
    fn new_cache(&self, len: usize, hidden: bool) -> Result<KvCache, RuntimeError> {
        assert!(hidden, "the elastic cache keeps hidden states");
        Ok(KvCache::new(len, hidden, ()))
    }
    fn run(&self, req: Request<'_>, _: Option<&mut KvCache>) -> Result<Response, RuntimeError> {
        let window = matches!(req.positions, Positions::List(_));
        let n_calls = self.calls.borrow().len();
        self.calls
            .borrow_mut()
            .push((window, req.from_layer, req.tokens.len()));
        let n = req.tokens.len();
        let probe = req.probe.expect("elastic passes probe the attention");
        let attention = (req.from_layer..3)
            .map(|l| {
                let mut columns = Vec::new();
                for _ in probe.keys {
                    for i in 0..n {
                        let swing = if (i + n_calls).is_multiple_of(2) {
                            0.9
                        } else {
                            0.1
                        };
                        columns.push(if l == 2 { swing } else { 0.5 });
                    }
                }
                let mut mass = vec![0.1; if probe.mass { n } else { 0 }];
                if let Some(m) = mass.first_mut() {
                    *m = 5.0;
                }
                LayerAttention { columns, mass }
            })
            .collect();
        let positions = req.positions.to_vec(n);
        let mut logits = Vec::new();
        for &r in req.rows {
            logits.extend(peaked(positions[r], level(positions[r])));
        }
        let Output::Propose { spec, rng } = req.output else {
            panic!("elastic passes propose");
        };
        Ok(Response {
            proposals: propose_rows(&logits, VOCAB, &spec, rng),
            attention,
            ..Response::default()
        })
    }
}

#[test]
fn elastic_refreshes_from_the_drifting_layer() {
    let model = Drifting {
        calls: RefCell::new(Vec::new()),
    };
    let mut p = params(8, 8, 8);
    p.cache = CacheMode::Elastic;
    p.elastic.window = 3;
    let out = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    let calls = model.calls.borrow();
    // The first pass refreshes everything; then window passes of at most 3 masks, the
    // tracked token (position 0) and the position the last step committed (its cached keys
    // and values are still the mask's), each followed by a refresh from layer 2 once a
    // previous column exists.
    assert_eq!(calls[0], (false, 0, 11));
    assert_eq!(calls[1], (true, 0, 5));
    assert!(out.refreshes > 0);
    for w in calls.windows(2) {
        if w[1].0 {
            continue;
        }
        if w[0].0 {
            assert_eq!(
                (w[1].1, w[1].2),
                (2, 11),
                "a refresh from the drifting layer"
            );
        }
    }
    // Layer-forwards: 3 per full or window pass, 1 per refresh from layer 2.
    let lf: usize = calls.iter().map(|c| 3 - c.1).sum();
    assert_eq!(out.layer_forwards, lf);
    assert_eq!(out.nfe, calls.len());
    assert!(out.canvas[PROMPT.len()..].iter().all(|&t| t != MASK));
    // gamma 0 never refreshes.
    drop(calls);
    model.calls.borrow_mut().clear();
    p.elastic.gamma = 0.0;
    let out = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
    assert_eq!(out.refreshes, 0);
    assert!(model.calls.borrow()[1..].iter().all(|c| c.0));
}

#[test]
fn an_elastic_refresh_stops_at_the_block_end_with_block_caching() {
    // Two blocks of 4 after the 3-token prompt: 3..7 and 7..11.
    for block_cache in [true, false] {
        let model = Drifting {
            calls: RefCell::new(Vec::new()),
        };
        let mut p = params(8, 8, 4);
        p.cache = CacheMode::Elastic;
        p.elastic.window = 2;
        p.elastic.block_cache = block_cache;
        let out = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
        assert!(out.canvas[PROMPT.len()..].iter().all(|&t| t != MASK));
        let calls = model.calls.borrow();
        let refreshes: Vec<(usize, usize)> = calls
            .windows(2)
            .filter(|w| w[0].0 && !w[1].0)
            .map(|w| (w[1].1, w[1].2))
            .collect();
        assert!(
            !refreshes.is_empty(),
            "block_cache {block_cache}: {calls:?}"
        );
        for (from, len) in refreshes {
            assert_eq!(from, 2, "from the drifting layer");
            if block_cache {
                // The decoded text and the active block; the masks beyond keep the block
                // start's keys and values.
                assert!(len == 7 || len == 11, "{len}: {calls:?}");
            } else {
                assert_eq!(len, 11, "without block caching a refresh covers the canvas");
            }
        }
        if block_cache {
            assert!(
                calls.windows(2).any(|w| w[0].0 && !w[1].0 && w[1].2 == 7),
                "a refresh inside the first block stops at its end: {calls:?}"
            );
            // Each block opens with a full pass from layer 0.
            assert_eq!(calls.iter().filter(|c| c.1 == 0 && !c.0).count(), 2);
        }
        assert_eq!(out.query_rows, calls.iter().map(|c| c.2).sum::<usize>());
    }
}

#[test]
fn prefix_refresh_opens_later_blocks_over_the_text_and_the_block_only() {
    // Three blocks of 4 after the 3-token prompt: 3..7, 7..11, 11..15 (canvas 15). Openings
    // are the non-window passes from layer 0: the run's first covers the canvas; later ones
    // cover 0..block end with prefix_refresh, the canvas without it; without block caching
    // there is no later opening either way.
    for (prefix, block_cache) in [(false, true), (true, true), (true, false)] {
        let model = Drifting {
            calls: RefCell::new(Vec::new()),
        };
        let mut p = params(12, 12, 4);
        p.cache = CacheMode::Elastic;
        p.elastic.window = 2;
        p.elastic.gamma = 0.0;
        p.elastic.prefix_refresh = prefix;
        p.elastic.block_cache = block_cache;
        let out = generate(&model, &tokens(false), &PROMPT, &p, &mut |_| true).expect("generate");
        assert!(out.canvas[PROMPT.len()..].iter().all(|&t| t != MASK));
        let calls = model.calls.borrow();
        let openings: Vec<usize> = calls
            .iter()
            .filter(|c| !c.0 && c.1 == 0)
            .map(|c| c.2)
            .collect();
        let want: &[usize] = match (prefix, block_cache) {
            (_, false) => &[15],
            (true, true) => &[15, 11, 15],
            (false, true) => &[15, 15, 15],
        };
        assert_eq!(
            openings, want,
            "prefix_refresh {prefix} block_cache {block_cache}: {calls:?}"
        );
        assert_eq!(out.refreshes, 0, "gamma 0 never refreshes on drift");
        assert_eq!(out.query_rows, calls.iter().map(|c| c.2).sum::<usize>());
    }
}

#[test]
fn a_context_reuses_the_matching_prefix_of_the_next_prompt() {
    // Logits that ignore the cache: with or without a context the canvases are the same, so
    // the test sees only which passes run.
    let model = Fake::new(|p, _, _| peaked(p, level(p)));
    for shift in [false, true] {
        let tok = tokens(shift);
        for cache in [CacheMode::None, CacheMode::Prefix, CacheMode::Dual] {
            let mut p = params(4, 4, 4);
            p.cache = cache;
            let mut ctx = ContextCache::new(64);
            let first =
                generate_with_context(&model, &tok, &PROMPT, &p, &mut ctx, &mut |_| true).unwrap();
            let plain = generate(&model, &tok, &PROMPT, &p, &mut |_| true).unwrap();
            assert_eq!(first.canvas, plain.canvas, "{cache:?}");
            assert_eq!(first.reused, 0);
            assert!(ctx.capacity() >= first.canvas.len());

            // The next prompt repeats the whole first canvas and adds two tokens.
            let mut next = first.canvas.clone();
            next.extend([8, 9]);
            let want = generate(&model, &tok, &next, &p, &mut |_| true).unwrap();
            model.calls.borrow_mut().clear();
            let second =
                generate_with_context(&model, &tok, &next, &p, &mut ctx, &mut |_| true).unwrap();
            assert_eq!(second.canvas, want.canvas, "{cache:?}");
            // At least the first prompt is reused (its entries were stored by the first
            // pass, before any answer position changed); with shifted logits one fewer.
            let floor = PROMPT.len() - usize::from(shift);
            assert!(
                second.reused >= floor && second.reused < next.len(),
                "{cache:?} shift {shift}: reused {}",
                second.reused
            );
            let calls = model.calls.borrow();
            assert_eq!(calls[0].start, second.reused);
            assert_eq!((calls[0].attend, calls[0].stored), ("cache", true));
            assert!(calls.iter().all(|c| c.start >= second.reused), "{calls:?}");
            assert!(second.query_rows < want.query_rows);
            drop(calls);

            // A prompt that differs at its first token reuses nothing.
            let mut other = next.clone();
            other[0] = 9;
            model.calls.borrow_mut().clear();
            let third =
                generate_with_context(&model, &tok, &other, &p, &mut ctx, &mut |_| true).unwrap();
            assert_eq!(third.reused, 0);
            let calls = model.calls.borrow();
            assert_eq!((calls[0].start, calls[0].attend), (0, "span"));
        }
    }
}

#[test]
fn a_context_is_not_used_by_the_elastic_cache_or_cfg() {
    let model = Fake::new(|p, _, _| peaked(p, level(p)));
    let tok = tokens(false);
    let mut ctx = ContextCache::new(64);
    let p = params(4, 4, 4);
    generate_with_context(&model, &tok, &PROMPT, &p, &mut ctx, &mut |_| true).unwrap();
    assert!(ctx.capacity() > 0);
    let mut cfg = params(4, 4, 4);
    cfg.cfg_scale = 1.0;
    let out = generate_with_context(&model, &tok, &PROMPT, &cfg, &mut ctx, &mut |_| true).unwrap();
    assert_eq!((out.reused, ctx.capacity()), (0, 0));
    assert!(!ContextCache::can_reuse(&DecodeParams {
        cache: CacheMode::Elastic,
        ..params(4, 4, 4)
    }));
}

#[test]
fn a_context_grows_by_doubling_and_starts_over_when_it_grows() {
    let model = Fake::new(|p, _, _| peaked(p, level(p)));
    let tok = tokens(false);
    let p = params(4, 4, 4);
    let mut ctx = ContextCache::new(1000);
    let first = generate_with_context(&model, &tok, &PROMPT, &p, &mut ctx, &mut |_| true).unwrap();
    assert_eq!(ctx.capacity(), 256);
    // A prompt that repeats the first canvas but outgrows the cache: a new, empty one.
    let mut long = first.canvas.clone();
    long.resize(300, 1);
    let out = generate_with_context(&model, &tok, &long, &p, &mut ctx, &mut |_| true).unwrap();
    assert_eq!((ctx.capacity(), out.reused), (512, 0));
    let again = generate_with_context(&model, &tok, &long, &p, &mut ctx, &mut |_| true).unwrap();
    assert!(again.reused >= 300 - 1, "{}", again.reused);
    // A whole context is made at its full size at once.
    let mut whole = ContextCache::whole(64);
    generate_with_context(&model, &tok, &PROMPT, &p, &mut whole, &mut |_| true).unwrap();
    assert_eq!(whole.capacity(), 64);
}
