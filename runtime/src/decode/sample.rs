//! From one row of logits to a proposed token and its confidence, as each original sampler
//! computes them: LLaDA (Gumbel-max in f64, top-1 probability in f64) and Dream's
//! `sample_tokens` (temperature, top-p, top-k, then max-probability, margin or neg-entropy).

use super::rng::Rng;

/// What a Dream-style row reports as its confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DreamConfidence {
    /// Probability of the chosen token (`maskgit_plus`, `origin`).
    Probability,
    /// Top-1 minus top-2 probability (`topk_margin`).
    Margin,
    /// `sum(p * ln(p + 1e-10))`, the negative entropy (`entropy`).
    NegEntropy,
}

/// Options that filter the vocabulary before sampling.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Filter {
    /// Keep the `k` largest logits (ties with the k-th kept).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p`.
    pub top_p: Option<f64>,
}

impl Filter {
    fn is_active(&self) -> bool {
        self.top_k.is_some() || self.top_p.is_some_and(|p| p < 1.0)
    }
}

/// Index of the largest value; the lowest index on ties; NaN never wins over a number.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    let mut seen = false;
    for (i, &v) in row.iter().enumerate() {
        if !seen || v > best_v || (best_v.is_nan() && !v.is_nan()) {
            best = i;
            best_v = v;
            seen = true;
        }
    }
    best
}

/// `softmax(row.to(f64))[index]`: max-subtracted, in f64.
pub fn probability_f64(row: &[f32], index: usize) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    (row[index] as f64 - max).exp() / sum
}

/// `softmax(row)` in f64 over the kept entries; removed entries (`keep[i] == false`) get 0.
fn softmax_kept(row: &[f32], keep: Option<&[bool]>) -> Vec<f64> {
    let kept = |i: usize| keep.is_none_or(|k| k[i]);
    let max = row
        .iter()
        .enumerate()
        .filter(|(i, _)| kept(*i))
        .fold(f64::NEG_INFINITY, |m, (_, &v)| m.max(v as f64));
    let mut p: Vec<f64> = row
        .iter()
        .enumerate()
        .map(|(i, &v)| if kept(i) { (v as f64 - max).exp() } else { 0.0 })
        .collect();
    let sum: f64 = p.iter().sum();
    for x in &mut p {
        *x /= sum;
    }
    p
}

/// Which tokens survive top-k then top-p (Dream's order: top-p first, then top-k, both on the
/// temperature-scaled logits). `None` when no filter is active.
fn filter_mask(row: &[f32], filter: Filter) -> Option<Vec<bool>> {
    if !filter.is_active() {
        return None;
    }
    let n = row.len();
    let mut keep = vec![true; n];
    // Descending by logit, lowest index first on ties.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    if let Some(p) = filter.top_p.filter(|&p| p < 1.0) {
        let probs = softmax_kept(row, None);
        let mut cum = 0.0;
        for (rank, &i) in order.iter().enumerate() {
            // A token goes when the mass before it already exceeds p; the first always stays.
            if rank > 0 && cum > p {
                keep[i] = false;
            }
            cum += probs[i];
        }
    }
    if let Some(k) = filter.top_k {
        let k = k.clamp(1, n.max(1));
        // The k-th largest of the (possibly top-p-filtered) logits; removed ones are lowest.
        let kth = order
            .iter()
            .filter(|&&i| keep[i])
            .nth(k - 1)
            .map(|&i| row[i]);
        if let Some(kth) = kth {
            for i in 0..n {
                if row[i] < kth {
                    keep[i] = false;
                }
            }
        }
    }
    Some(keep)
}

/// LLaDA / Fast-dLLM: the token is `argmax(exp(l) / (-ln u)^T)` in f64 (plain argmax at
/// `temperature == 0`), the confidence `softmax(l.to(f64))[token]` of the raw logits.
/// `filter` (an extension of the original) removes tokens from the choice only.
pub fn llada_row(row: &[f32], temperature: f64, filter: Filter, rng: &mut Rng) -> (u32, f64) {
    let keep = filter_mask(row, filter);
    let token = if temperature == 0.0 {
        match &keep {
            None => argmax(row),
            Some(k) => masked_argmax(row, k),
        }
    } else {
        let mut best = 0;
        let mut best_v = f64::NEG_INFINITY;
        let mut seen = false;
        for (i, &v) in row.iter().enumerate() {
            let u = rng.uniform();
            if keep.as_ref().is_some_and(|k| !k[i]) {
                continue;
            }
            let g = (v as f64).exp() / (-u.ln()).powf(temperature);
            if !seen || g > best_v {
                best = i;
                best_v = g;
                seen = true;
            }
        }
        best
    };
    (token as u32, probability_f64(row, token))
}

fn masked_argmax(row: &[f32], keep: &[bool]) -> usize {
    let mut best = None;
    for (i, &v) in row.iter().enumerate() {
        if keep[i] && best.is_none_or(|b: usize| v > row[b]) {
            best = Some(i);
        }
    }
    best.unwrap_or_else(|| argmax(row))
}

/// Dream `sample_tokens` on one row: logits / T (f32) when T > 0, top-p, top-k, softmax;
/// a categorical draw when T > 0, else the most likely token; then the confidence `rule`.
pub fn dream_row(
    row: &[f32],
    temperature: f64,
    filter: Filter,
    rule: DreamConfidence,
    rng: &mut Rng,
) -> (u32, f64) {
    let scaled: Vec<f32>;
    let row = if temperature > 0.0 {
        let t = temperature as f32;
        scaled = row.iter().map(|&v| v / t).collect();
        &scaled[..]
    } else {
        row
    };
    let keep = filter_mask(row, filter);
    let probs = softmax_kept(row, keep.as_deref());
    let drawn = if temperature > 0.0 {
        rng.categorical(&probs)
    } else {
        None
    };
    let token = drawn.unwrap_or_else(|| argmax_f64(&probs));
    let confidence = match rule {
        DreamConfidence::Probability => probs[token],
        DreamConfidence::Margin => {
            let (mut top1, mut top2) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
            for &p in &probs {
                if p > top1 {
                    top2 = top1;
                    top1 = p;
                } else if p > top2 {
                    top2 = p;
                }
            }
            if probs.len() < 2 { top1 } else { top1 - top2 }
        }
        DreamConfidence::NegEntropy => probs.iter().map(|&p| p * (p + 1e-10).ln()).sum(),
    };
    (token as u32, confidence)
}

fn argmax_f64(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Classifier-free guidance on one row: `u + (scale + 1) * (c - u)` in f32, into `cond`.
pub fn cfg_combine(cond: &mut [f32], uncond: &[f32], scale: f64) {
    let s = (scale + 1.0) as f32;
    for (c, &u) in cond.iter_mut().zip(uncond) {
        *c = u + s * (*c - u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_lowest_index_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.5]), 1);
        assert_eq!(argmax(&[-1.0]), 0);
    }

    #[test]
    fn probability_is_softmax() {
        let row = [0.0f32, 1.0, 2.0];
        let z: f64 = [0.0f64, 1.0, 2.0].iter().map(|v| v.exp()).sum();
        assert!((probability_f64(&row, 2) - 2f64.exp() / z).abs() < 1e-15);
        // Large logits do not overflow.
        assert!((probability_f64(&[1000.0, 1000.0], 0) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn llada_greedy_takes_argmax_and_its_probability() {
        let mut rng = Rng::new(0);
        let row = [0.5f32, 2.0, 1.0];
        let (tok, conf) = llada_row(&row, 0.0, Filter::default(), &mut rng);
        assert_eq!(tok, 1);
        assert_eq!(conf, probability_f64(&row, 1));
    }

    #[test]
    fn llada_gumbel_samples_by_probability() {
        let mut rng = Rng::new(3);
        let row = [0.0f32, (3.0f32).ln()]; // probabilities 1/4, 3/4
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| llada_row(&row, 1.0, Filter::default(), &mut rng).0 == 1)
            .count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.02, "frac {frac}");
    }

    #[test]
    fn top_k_and_top_p_restrict_the_draw() {
        let mut rng = Rng::new(5);
        let row = [3.0f32, 2.9, 2.8, -5.0];
        for _ in 0..500 {
            let f = Filter {
                top_k: Some(2),
                top_p: None,
            };
            let (t, _) = dream_row(&row, 1.0, f, DreamConfidence::Probability, &mut rng);
            assert!(t < 2);
            let (t, _) = llada_row(&row, 1.0, f, &mut rng);
            assert!(t < 2);
            let f = Filter {
                top_k: None,
                top_p: Some(0.1),
            };
            let (t, _) = dream_row(&row, 1.0, f, DreamConfidence::Probability, &mut rng);
            assert_eq!(t, 0);
        }
        let keep = filter_mask(
            &row,
            Filter {
                top_k: None,
                top_p: Some(0.5),
            },
        )
        .expect("active");
        // p ≈ [0.367, 0.332, 0.300, 0.0002]: the first two reach 0.5.
        assert_eq!(keep, vec![true, true, false, false]);
        assert!(
            filter_mask(
                &row,
                Filter {
                    top_k: None,
                    top_p: Some(1.0)
                }
            )
            .is_none()
        );
    }

    #[test]
    fn dream_rules() {
        let mut rng = Rng::new(0);
        let row = [1.0f32, 3.0, 2.0];
        let p = softmax_kept(&row, None);
        let (t, c) = dream_row(
            &row,
            0.0,
            Filter::default(),
            DreamConfidence::Probability,
            &mut rng,
        );
        assert_eq!((t, c), (1, p[1]));
        let (t, c) = dream_row(
            &row,
            0.0,
            Filter::default(),
            DreamConfidence::Margin,
            &mut rng,
        );
        assert_eq!(t, 1);
        assert!((c - (p[1] - p[2])).abs() < 1e-15);
        let (_, c) = dream_row(
            &row,
            0.0,
            Filter::default(),
            DreamConfidence::NegEntropy,
            &mut rng,
        );
        let e: f64 = p.iter().map(|&x| x * (x + 1e-10).ln()).sum();
        assert!((c - e).abs() < 1e-15);
        assert!(c < 0.0);
    }

    #[test]
    fn cfg_formula() {
        let mut c = [2.0f32, 0.0];
        cfg_combine(&mut c, &[1.0, 1.0], 1.0);
        assert_eq!(c, [3.0, -1.0]);
    }
}
