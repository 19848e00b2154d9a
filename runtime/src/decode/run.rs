//! The state every schedule's loop shares: the canvas, the counters, the random generator, the
//! cache, and the one step that turns candidates into commits (forward on the span the cache
//! mode calls for, proposals by the rule, selection, commit). The Dream shift rule lives here.

use super::elastic::ElasticState;
use super::propose::{Proposal, propose_rows};
use super::rng::Rng;
use super::rule::{self, Rule, Select};
use super::sample::cfg_combine;
use super::{CacheMode, DecodeParams, DecodeTokens, GenerateOutput, StepEvent};
use crate::RuntimeError;
use crate::model::{Attend, Forward, KvCache, Output, Positions, Probe, Request, Timings};
use std::ops::Range;

/// How a step's forward pass runs.
#[derive(Debug, Clone)]
pub(super) enum Pass {
    /// The whole canvas, attending only to itself; refreshes the cache when there is one.
    Full,
    /// Only the span the cache mode needs around `block`, attending to the cached rest.
    Cached(Range<usize>),
    /// Elastic-Cache: a window of the masks of `block`, refreshing from a layer on drift.
    Elastic(Range<usize>),
    /// Elastic-Cache with `prefix_refresh`: a block's opening pass over the decoded text and
    /// `block` only (`0..block.end`), attending to the cached masks beyond it.
    ElasticOpen(Range<usize>),
}

/// One generation in progress.
pub(super) struct Run<'a> {
    pub model: &'a dyn Forward,
    pub tokens: &'a DecodeTokens,
    pub params: &'a DecodeParams,
    on_step: &'a mut dyn FnMut(&StepEvent<'_>) -> bool,
    pub rule: Rule,
    /// `[prompt_len + gen_length]`.
    pub canvas: Vec<u32>,
    pub prompt_len: usize,
    pub vocab: usize,
    pub rng: Rng,
    pub cache: Option<KvCache>,
    nfe: usize,
    steps: usize,
    stopped_early: bool,
    layer_forwards: usize,
    query_rows: usize,
    refreshes: usize,
    timings: Option<Timings>,
    elastic: ElasticState,
    /// Elastic cache: positions committed since their keys and values were last computed
    /// (the cache still holds the mask's); the next pass recomputes them.
    stale: Vec<usize>,
    /// With a context kept across generations ([`super::ContextCache`]): positions
    /// `0..frozen` hold keys and values from an earlier generation and are never run again;
    /// every pass starts at `frozen` at the earliest and attends to them in the cache.
    frozen: usize,
    /// With a context: the token each cache position's keys and values were last computed
    /// from (`[cache len]`, [`super::context::NONE`] where none was).
    stored: Option<Vec<u32>>,
}

impl<'a> Run<'a> {
    pub fn new(
        model: &'a dyn Forward,
        tokens: &'a DecodeTokens,
        prompt: &[u32],
        params: &'a DecodeParams,
        on_step: &'a mut dyn FnMut(&StepEvent<'_>) -> bool,
    ) -> Self {
        let mut canvas = prompt.to_vec();
        canvas.resize(prompt.len() + params.gen_length, tokens.mask_id);
        Run {
            model,
            tokens,
            params,
            on_step,
            rule: Rule::new(params),
            canvas,
            prompt_len: prompt.len(),
            vocab: model.vocab_size(),
            rng: Rng::new(params.seed),
            cache: None,
            nfe: 0,
            steps: 0,
            stopped_early: false,
            layer_forwards: 0,
            query_rows: 0,
            refreshes: 0,
            timings: params.profile.then(Timings::default),
            elastic: ElasticState::default(),
            stale: Vec::new(),
            frozen: 0,
            stored: None,
        }
    }

    /// Run with `cache` kept from earlier generations: its positions `0..frozen` hold the
    /// prompt's first `frozen` tokens' keys and values and are not recomputed; `stored` is
    /// the token of every cache position ([`Run::detach_context`] gives both back).
    pub fn attach_context(&mut self, cache: KvCache, stored: Vec<u32>, frozen: usize) {
        self.cache = Some(cache);
        self.stored = Some(stored);
        self.frozen = frozen;
    }

    /// The cache and the tokens it was computed from, taken back after the run.
    pub fn detach_context(&mut self) -> Option<(KvCache, Vec<u32>)> {
        let stored = self.stored.take()?;
        Some((self.cache.take()?, stored))
    }

    /// Make the cache the mode needs (none for [`CacheMode::None`]); a context cache
    /// attached before is kept.
    pub fn open_cache(&mut self) -> Result<(), RuntimeError> {
        if self.stored.is_some() {
            return Ok(());
        }
        self.cache = match self.params.cache {
            CacheMode::None => None,
            CacheMode::Prefix | CacheMode::Dual => {
                Some(self.model.new_cache(self.canvas.len(), false)?)
            }
            CacheMode::Elastic => Some(self.model.new_cache(self.canvas.len(), true)?),
        };
        Ok(())
    }

    /// The pass of step `i` of a block: full without a cache and at the block's first step
    /// (for the elastic cache without block caching, only at the run's first step).
    pub fn pass(&self, i: usize, block: &Range<usize>) -> Pass {
        // A context cache holds older entries past `frozen`: the first pass rewrites them.
        if self.cache.is_none() || self.params.cache == CacheMode::None || self.nfe == 0 {
            return Pass::Full;
        }
        if self.params.cache == CacheMode::Elastic {
            let first_ever = self.nfe == 0;
            // Without block caching a block opens with a window pass like any other step, so
            // prefix refresh (a cheaper block-start refresh) has nothing to replace.
            let opening = i == 0 && self.params.elastic.block_cache;
            return if first_ever || (opening && !self.params.elastic.prefix_refresh) {
                Pass::Full
            } else if opening {
                Pass::ElasticOpen(block.clone())
            } else {
                Pass::Elastic(block.clone())
            };
        }
        if i == 0 {
            Pass::Full
        } else {
            Pass::Cached(block.clone())
        }
    }

    /// Whether a block the full first step completes still gets one cached step, as
    /// Fast-dLLM's prefix and dual loops do.
    pub fn extra_cached_step(&self) -> bool {
        matches!(self.params.cache, CacheMode::Prefix | CacheMode::Dual)
    }

    pub fn is_mask(&self, pos: usize) -> bool {
        self.canvas[pos] == self.tokens.mask_id
    }

    /// Masked positions in `range`, ascending.
    pub fn masked_in(&self, range: Range<usize>) -> Vec<usize> {
        range.filter(|&p| self.is_mask(p)).collect()
    }

    /// The logits row that predicts position `pos` (Dream: the row before it; row 0 for
    /// position 0).
    fn source_row(&self, pos: usize) -> usize {
        if self.tokens.shift_logits {
            pos.saturating_sub(1)
        } else {
            pos
        }
    }

    /// The span `[start, end)` a pass runs.
    fn span(&self, pass: &Pass) -> Range<usize> {
        let len = self.canvas.len();
        match pass {
            Pass::Full => self.frozen..len,
            Pass::Elastic(_) | Pass::ElasticOpen(_) => 0..len,
            Pass::Cached(block) => {
                // With shifted logits a masked first position needs the row before the block;
                // otherwise the span is exactly what Fast-dLLM runs.
                let start = if self.tokens.shift_logits && self.is_mask(block.start) {
                    block.start.saturating_sub(1)
                } else {
                    block.start
                };
                match self.params.cache {
                    CacheMode::Dual => start..block.end,
                    _ => start..len,
                }
            }
        }
    }

    /// One proposal per position in `positions` from one forward pass (two with CFG).
    fn propose(&mut self, pass: &Pass, positions: &[usize]) -> Result<Vec<Proposal>, RuntimeError> {
        if let Pass::Elastic(block) = pass {
            return self.propose_elastic(positions, block);
        }
        if let Pass::ElasticOpen(block) = pass {
            return self.refresh(0, positions, block.end);
        }
        if self.params.cache == CacheMode::Elastic {
            return self.refresh(0, positions, self.canvas.len());
        }
        let span = self.span(pass);
        // Span-relative rows, ascending and distinct (with the shift, positions 0 and 1 share
        // row 0).
        let mut rows: Vec<usize> = positions
            .iter()
            .map(|&p| self.source_row(p) - span.start)
            .collect();
        rows.sort_unstable();
        rows.dedup();
        let tokens = self.canvas[span.clone()].to_vec();
        let full = matches!(pass, Pass::Full);
        // A full pass after a frozen context reads the context's keys and values.
        let attend = if full && self.frozen == 0 {
            Attend::Span
        } else {
            Attend::Cache
        };
        let store = full && self.cache.is_some();
        let spec = self.rule.spec;
        let profile = self.params.profile;
        let cfg = full && self.params.cfg_scale > 0.0;
        let request = |output| Request {
            tokens: &tokens,
            positions: Positions::Run(span.start),
            attend,
            store,
            rows: &rows,
            from_layer: 0,
            probe: None,
            output,
            profile,
        };
        let proposals = if cfg {
            let cond = self
                .model
                .run(request(Output::Logits), self.cache.as_mut())?;
            self.count(&cond.timings, tokens.len());
            // The prompt's own tokens (not masks in it) are masked in the unconditional pass.
            let mask = self.tokens.mask_id;
            let uncond_tokens: Vec<u32> = tokens
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    if i < self.prompt_len && t != mask {
                        mask
                    } else {
                        t
                    }
                })
                .collect();
            let mut req = Request::logits(&uncond_tokens, 0, &rows);
            req.profile = profile;
            let uncond = self.model.run(req, None)?;
            self.count(&uncond.timings, tokens.len());
            let mut logits = cond.logits;
            check_len(logits.len(), rows.len() * self.vocab, "logits")?;
            check_len(uncond.logits.len(), rows.len() * self.vocab, "logits")?;
            for (c, u) in logits
                .chunks_exact_mut(self.vocab)
                .zip(uncond.logits.chunks_exact(self.vocab))
            {
                cfg_combine(c, u, self.params.cfg_scale);
            }
            propose_rows(&logits, self.vocab, &spec, &mut self.rng)
        } else {
            let out = Output::Propose {
                spec,
                rng: &mut self.rng,
            };
            let resp = self.model.run(request(out), self.cache.as_mut())?;
            self.count(&resp.timings, tokens.len());
            resp.proposals
        };
        if store && let Some(stored) = self.stored.as_mut() {
            stored[span.clone()].copy_from_slice(&tokens);
        }
        check_len(proposals.len(), rows.len(), "proposals")?;
        Ok(positions
            .iter()
            .map(|&p| {
                let r = self.source_row(p) - span.start;
                proposals[rows.binary_search(&r).unwrap_or(0)]
            })
            .collect())
    }

    /// Elastic-Cache: a pass over the positions `0..end` from `from_layer` (attending to the
    /// cached keys and values beyond `end`), storing keys, values and hidden states, probing
    /// the tracked tokens and every key's mass; proposals for `positions`.
    fn refresh(
        &mut self,
        from_layer: usize,
        positions: &[usize],
        end: usize,
    ) -> Result<Vec<Proposal>, RuntimeError> {
        let len = self.canvas.len();
        let mut rows: Vec<usize> = positions.iter().map(|&p| self.source_row(p)).collect();
        rows.sort_unstable();
        rows.dedup();
        let tokens = self.canvas[..end].to_vec();
        let keys = self.elastic.tracked_union();
        let req = Request {
            tokens: &tokens,
            positions: Positions::Run(0),
            attend: if end == len {
                Attend::Span
            } else {
                Attend::Cache
            },
            store: true,
            rows: &rows,
            from_layer,
            probe: Some(Probe {
                keys: &keys,
                mass: true,
            }),
            output: Output::Propose {
                spec: self.rule.spec,
                rng: &mut self.rng,
            },
            profile: self.params.profile,
        };
        let resp = self.model.run(req, self.cache.as_mut())?;
        self.count_layers(
            &resp.timings,
            end,
            self.model.n_layers().saturating_sub(from_layer),
        );
        // Every position before `end` has its keys and values recomputed.
        self.stale.retain(|&p| p >= end);
        check_len(resp.proposals.len(), rows.len(), "proposals")?;
        let all: Vec<usize> = (0..end).collect();
        let track = self.params.elastic.track;
        self.elastic
            .after_refresh(from_layer, &resp.attention, &keys, &all, track);
        Ok(positions
            .iter()
            .map(|&p| resp.proposals[rows.binary_search(&self.source_row(p)).unwrap_or(0)])
            .collect())
    }

    /// Elastic-Cache: a window pass over `positions` (the rows predicting them and the tracked
    /// tokens), then a refresh from the first layer whose tracked attention drifted. With
    /// block caching the refresh stops at the end of `block`: the masks beyond it keep the
    /// keys and values of the block's first pass, as in the window passes (the paper's
    /// "off-window MASK caches"), so a refresh costs the decoded text and the block, not the
    /// whole canvas.
    fn propose_elastic(
        &mut self,
        positions: &[usize],
        block: &Range<usize>,
    ) -> Result<Vec<Proposal>, RuntimeError> {
        let e = self.params.elastic;
        let keys = self.elastic.tracked_union();
        let mut source: Vec<usize> = positions.iter().map(|&p| self.source_row(p)).collect();
        source.sort_unstable();
        source.dedup();
        // Positions committed since the last pass still hold the mask's keys and values in
        // the cache: they are recomputed here (and stored) with their new tokens.
        let mut queries: Vec<usize> = positions
            .iter()
            .chain(&source)
            .chain(&keys)
            .chain(&self.stale)
            .copied()
            .collect();
        queries.sort_unstable();
        queries.dedup();
        let rows: Vec<usize> = source
            .iter()
            .map(|p| queries.binary_search(p).unwrap_or(0))
            .collect();
        let tokens: Vec<u32> = queries.iter().map(|&p| self.canvas[p]).collect();
        let req = Request {
            tokens: &tokens,
            positions: Positions::List(&queries),
            attend: Attend::Cache,
            store: true,
            rows: &rows,
            from_layer: 0,
            probe: Some(Probe {
                keys: &keys,
                mass: false,
            }),
            output: Output::Propose {
                spec: self.rule.spec,
                rng: &mut self.rng,
            },
            profile: self.params.profile,
        };
        let resp = self.model.run(req, self.cache.as_mut())?;
        self.count_layers(&resp.timings, queries.len(), self.model.n_layers());
        self.stale.clear();
        check_len(resp.proposals.len(), rows.len(), "proposals")?;
        // gamma 1 is "always refresh from layer 0", whatever the similarities.
        let drift = if e.gamma >= 1.0 {
            Some(0)
        } else {
            self.elastic
                .drift(0, &resp.attention, &keys, &queries, e.gamma)
        };
        // The refresh starts at the drifting layer l itself, not at l + 1 as the paper words
        // it: layer l's keys and values are fresh, but its outputs for the positions outside
        // this pass (the hidden states entering l + 1, read from the cache) are not, and the
        // keys of l + 1 on are computed from them. Measured on the demo (f32, gen 128, 100
        // prompts): from l + 1, sort 99 → 97 % and add 89 → 87 %, at 2 % fewer layer-forwards
        // but 4–8 % more query rows (more drifts follow).
        if let Some(l) = drift {
            self.refreshes += 1;
            let end = if e.block_cache {
                block.end
            } else {
                self.canvas.len()
            };
            return self.refresh(l, positions, end);
        }
        Ok(positions
            .iter()
            .map(|&p| resp.proposals[source.binary_search(&self.source_row(p)).unwrap_or(0)])
            .collect())
    }

    fn count(&mut self, t: &Option<Timings>, span_len: usize) {
        self.count_layers(t, span_len, self.model.n_layers());
    }

    fn count_layers(&mut self, t: &Option<Timings>, span_len: usize, layers: usize) {
        self.nfe += 1;
        self.layer_forwards += layers;
        self.query_rows += span_len;
        if let (Some(acc), Some(t)) = (self.timings.as_mut(), t) {
            acc.add(t);
        }
    }

    /// One step: propose for the candidate positions `cands` (for `origin`, for those its
    /// draw with probability `reveal` picks), choose by the rule with the schedule's count
    /// `k`, and commit. With `skip_idle`, a step that can commit nothing makes no forward
    /// pass (Dream's loop); the block schedule always makes one, as the original counts it.
    /// Returns the committed positions.
    pub fn step(
        &mut self,
        pass: &Pass,
        cands: &[usize],
        k: usize,
        reveal: Option<f64>,
        skip_idle: bool,
    ) -> Result<Vec<usize>, RuntimeError> {
        // The elastic window: the first masks of the block only.
        let cands = match pass {
            Pass::Elastic(_) => &cands[..cands.len().min(self.params.elastic.window)],
            _ => cands,
        };
        let positions: Vec<usize> = match (self.rule.select, reveal) {
            (Select::Revealed, Some(r)) => cands
                .iter()
                .copied()
                .filter(|_| self.rng.uniform() < r)
                .collect(),
            _ => cands.to_vec(),
        };
        let idle = positions.is_empty() || (self.rule.uses_count() && k == 0);
        if skip_idle && idle {
            return Ok(Vec::new());
        }
        let proposals = self.propose(pass, &positions)?;
        let cands = rule::candidates(&positions, &proposals);
        let chosen = self.rule.choose(&cands, k, &mut self.rng);
        let mut committed = Vec::with_capacity(chosen.len());
        for &c in &chosen {
            self.canvas[cands[c].pos] = cands[c].token;
            committed.push(cands[c].pos);
        }
        if self.params.cache == CacheMode::Elastic {
            self.stale.extend_from_slice(&committed);
        }
        Ok(committed)
    }

    /// Commit the proposals of `positions` as they are (Fast-dLLM Dream's block opening).
    pub fn commit_all(
        &mut self,
        pass: &Pass,
        positions: &[usize],
    ) -> Result<Vec<usize>, RuntimeError> {
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let proposals = self.propose(pass, positions)?;
        for (&p, pr) in positions.iter().zip(&proposals) {
            self.canvas[p] = pr.token;
        }
        if self.params.cache == CacheMode::Elastic {
            self.stale.extend_from_slice(positions);
        }
        Ok(positions.to_vec())
    }

    /// Report the step just run; `Err(Cancelled)` when the callback says stop. Returns whether
    /// the run may stop early.
    pub fn end_step(&mut self, committed: &[usize]) -> Result<bool, RuntimeError> {
        let masks_left = self.canvas[self.prompt_len..]
            .iter()
            .filter(|&&t| t == self.tokens.mask_id)
            .count();
        let event = StepEvent {
            step: self.steps,
            planned_steps: self.params.steps,
            nfe: self.nfe,
            masks_left,
            committed,
            canvas: &self.canvas,
            prompt_len: self.prompt_len,
        };
        self.steps += 1;
        if !(self.on_step)(&event) {
            return Err(RuntimeError::Cancelled);
        }
        if self.params.stop_early
            && masks_left > 0
            && let Some(stop_at) = self.final_answer_end()
        {
            let pad = self.tokens.pad_id.unwrap_or(self.canvas[stop_at]);
            let mask = self.tokens.mask_id;
            for t in &mut self.canvas[stop_at + 1..] {
                if *t == mask {
                    *t = pad;
                }
            }
            self.stopped_early = true;
            return Ok(true);
        }
        Ok(false)
    }

    /// The position of the first stop token of the generated region when no mask precedes
    /// it: the answer can no longer change.
    fn final_answer_end(&self) -> Option<usize> {
        for p in self.prompt_len..self.canvas.len() {
            let t = self.canvas[p];
            if t == self.tokens.mask_id {
                return None;
            }
            if self.tokens.stop_ids.contains(&t) {
                return Some(p);
            }
        }
        None
    }

    pub fn finish(self) -> GenerateOutput {
        let end = (self.prompt_len..self.canvas.len())
            .find(|&p| self.tokens.stop_ids.contains(&self.canvas[p]))
            .unwrap_or(self.canvas.len());
        GenerateOutput {
            answer: self.prompt_len..end,
            canvas: self.canvas,
            prompt_len: self.prompt_len,
            nfe: self.nfe,
            steps: self.steps,
            stopped_early: self.stopped_early,
            layer_forwards: self.layer_forwards,
            query_rows: self.query_rows,
            refreshes: self.refreshes,
            timings: self.timings,
            reused: self.frozen,
        }
    }
}

fn check_len(got: usize, want: usize, what: &str) -> Result<(), RuntimeError> {
    if got != want {
        return Err(RuntimeError::Unsupported(format!(
            "forward returned {got} {what}, {want} expected"
        )));
    }
    Ok(())
}
