//! Which candidate positions a step commits: the `k` most confident (LLaDA, Dream), Fast-dLLM's
//! threshold rule and its factor rule, and Dream's `alg_temp` draw.
//!
//! Ranking is by confidence, highest first; ties go to the lowest position, and NaN ranks last.

use super::rng::Rng;
use std::cmp::Ordering;

/// One masked position a step may commit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Absolute canvas position.
    pub pos: usize,
    /// Proposed token.
    pub token: u32,
    /// Confidence of the proposal; higher commits first.
    pub confidence: f64,
}

fn rank(a: &Candidate, b: &Candidate) -> Ordering {
    let ca = if a.confidence.is_nan() {
        f64::NEG_INFINITY
    } else {
        a.confidence
    };
    let cb = if b.confidence.is_nan() {
        f64::NEG_INFINITY
    } else {
        b.confidence
    };
    cb.partial_cmp(&ca)
        .unwrap_or(Ordering::Equal)
        .then(a.pos.cmp(&b.pos))
}

/// Candidate indices, most confident first.
fn ranked(cands: &[Candidate]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|&a, &b| rank(&cands[a], &cands[b]));
    order
}

/// The `k` most confident candidates (all of them when `k` exceeds their number).
pub fn top_k(cands: &[Candidate], k: usize) -> Vec<usize> {
    let mut order = ranked(cands);
    order.truncate(k);
    order
}

/// Fast-dLLM threshold: the `min` most confident candidates always (Fast-dLLM: `min` = 1),
/// and every other one whose confidence is at least `threshold`.
pub fn threshold(cands: &[Candidate], threshold: f64, min: usize) -> Vec<usize> {
    let order = ranked(cands);
    let mut out = Vec::new();
    for (r, &i) in order.iter().enumerate() {
        if r < min.max(1) || cands[i].confidence >= threshold {
            out.push(i);
        }
    }
    out
}

/// Fast-dLLM factor rule (`get_transfer_index_dynamic`): with the confidences sorted
/// descending `c_0 ≥ c_1 ≥ …` over `n` candidates, commit the first `m`, where `m` is the
/// first rank `r ≥ 1` with `c_r < 1 - factor / (r + 2)`, or `n` if there is none; an `m` of
/// `n - 1` becomes `n`, exactly as the original's loop ends.
pub fn factor(cands: &[Candidate], factor: f64) -> Vec<usize> {
    let order = ranked(cands);
    let n = order.len();
    if n == 0 {
        return order;
    }
    let mut m = n;
    for (r, &i) in order.iter().enumerate().skip(1) {
        // Original: thresholds 1 - factor / (k + 1) for k = 1..=n, the first replaced by -1.
        let thresh = 1.0 - factor / ((r + 1) as f64 + 1.0);
        if cands[i].confidence < thresh {
            m = r;
            break;
        }
    }
    if m == n - 1 || m == 0 {
        m += 1;
    }
    let mut order = order;
    order.truncate(m.min(n));
    order
}

/// Dream `alg_temp > 0`: draw `k` candidates without replacement with probabilities
/// `softmax(confidence / alg_temp)` (f64).
pub fn sample_by_confidence(
    cands: &[Candidate],
    k: usize,
    alg_temp: f64,
    rng: &mut Rng,
) -> Vec<usize> {
    let max = cands
        .iter()
        .fold(f64::NEG_INFINITY, |m, c| m.max(c.confidence));
    let mut w: Vec<f64> = cands
        .iter()
        .map(|c| {
            let x = ((c.confidence - max) / alg_temp).exp();
            if x.is_finite() { x } else { 0.0 }
        })
        .collect();
    let mut out = Vec::with_capacity(k.min(cands.len()));
    while out.len() < k.min(cands.len()) {
        let pick = match rng.categorical(&w) {
            Some(i) => i,
            // Only zero weights left (underflow): fall back to the best remaining by rank.
            None => match ranked(cands).into_iter().find(|i| !out.contains(i)) {
                Some(i) => i,
                None => break,
            },
        };
        w[pick] = 0.0;
        out.push(pick);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(conf: &[f64]) -> Vec<Candidate> {
        conf.iter()
            .enumerate()
            .map(|(i, &c)| Candidate {
                pos: 10 + i,
                token: i as u32,
                confidence: c,
            })
            .collect()
    }

    #[test]
    fn top_k_by_confidence_ties_lowest_position() {
        let c = cands(&[0.2, 0.9, 0.5, 0.9, 0.1]);
        assert_eq!(top_k(&c, 1), vec![1]);
        assert_eq!(top_k(&c, 2), vec![1, 3]);
        assert_eq!(top_k(&c, 3), vec![1, 3, 2]);
        assert_eq!(top_k(&c, 0), Vec::<usize>::new());
        assert_eq!(top_k(&c, 99).len(), 5);
        // All equal: positions in order.
        let e = cands(&[0.5; 4]);
        assert_eq!(top_k(&e, 4), vec![0, 1, 2, 3]);
        // NaN ranks last.
        let n = cands(&[f64::NAN, 0.1]);
        assert_eq!(top_k(&n, 1), vec![1]);
    }

    #[test]
    fn threshold_keeps_best_and_those_above() {
        let c = cands(&[0.2, 0.95, 0.9, 0.5]);
        assert_eq!(threshold(&c, 0.9, 1), vec![1, 2]);
        // Nothing reaches tau: the best one anyway.
        assert_eq!(threshold(&c, 0.99, 1), vec![1]);
        // A minimum of 0 is read as Fast-dLLM's 1.
        assert_eq!(threshold(&c, 0.99, 0), vec![1]);
        // tau = 1 commits only certainties (and the best).
        let d = cands(&[1.0, 0.3, 1.0]);
        assert_eq!(threshold(&d, 1.0, 1), vec![0, 2]);
        assert_eq!(threshold(&cands(&[0.1]), 1.0, 1), vec![0]);
        assert!(threshold(&[], 0.5, 1).is_empty());
        assert!(threshold(&[], 0.5, 4).is_empty());
    }

    #[test]
    fn threshold_with_a_minimum_commits_at_least_min_in_rank_order() {
        let c = cands(&[0.2, 0.95, 0.9, 0.5, f64::NAN]);
        // Fewer than `min` reach tau: the `min` best.
        assert_eq!(threshold(&c, 0.99, 3), vec![1, 2, 3]);
        // More than `min` reach tau: all of those.
        assert_eq!(threshold(&c, 0.4, 2), vec![1, 2, 3]);
        // A minimum beyond the candidates takes them all, NaN last.
        assert_eq!(threshold(&c, 0.99, 9), vec![1, 2, 3, 0, 4]);
        // Ties at the cut go to the lowest position.
        let e = cands(&[0.5; 4]);
        assert_eq!(threshold(&e, 0.9, 2), vec![0, 1]);
    }

    #[test]
    fn factor_rule_matches_original_loop() {
        // n = 4, factor 1: thresholds by rank [-1, 1-1/3, 1-1/4, 1-1/5] = [-1, .667, .75, .8].
        let c = cands(&[0.9, 0.7, 0.1, 0.8]);
        // sorted [0.9, 0.8, 0.7, 0.1]: rank 1 0.8 ≥ .667, rank 2 0.7 < .75 → m = 2.
        assert_eq!(factor(&c, 1.0), vec![0, 3]);
        // rank 1 fails → m = 1.
        let c = cands(&[0.9, 0.1, 0.1, 0.1]);
        assert_eq!(factor(&c, 1.0), vec![0]);
        // Only the last rank fails → m = n - 1 becomes n.
        let c = cands(&[0.9, 0.9, 0.9, 0.1]);
        assert_eq!(factor(&c, 1.0).len(), 4);
        // None fails → n.
        let c = cands(&[0.99; 3]);
        assert_eq!(factor(&c, 1.0).len(), 3);
        // One candidate.
        assert_eq!(factor(&cands(&[0.0]), 1.0), vec![0]);
        // Two candidates, the second fails at rank 1 = n - 1 → both.
        assert_eq!(factor(&cands(&[0.9, 0.0]), 1.0).len(), 2);
    }

    #[test]
    fn alg_temp_draws_distinct_and_prefers_confident() {
        let mut rng = Rng::new(9);
        let c = cands(&[0.0, 5.0, -5.0, 1.0]);
        let mut first = [0usize; 4];
        for _ in 0..2000 {
            let s = sample_by_confidence(&c, 3, 1.0, &mut rng);
            assert_eq!(s.len(), 3);
            let mut u = s.clone();
            u.sort();
            u.dedup();
            assert_eq!(u.len(), 3);
            first[s[0]] += 1;
        }
        assert!(first[1] > 1800, "{first:?}");
        assert_eq!(sample_by_confidence(&c, 9, 1.0, &mut rng).len(), 4);
    }
}
