//! How many masked positions each step commits: LLaDA's even split per block and Dream's
//! timestep schedule (`linspace(1, eps, steps + 1)`, in f32 as the original computes it).

/// LLaDA `get_num_transfer_tokens`: `n_masked` tokens over `steps` steps, `n / steps` each and
/// one more for the first `n % steps` steps. Returns `[steps]`; empty when `steps` is 0.
pub fn llada_transfer_counts(n_masked: usize, steps: usize) -> Vec<usize> {
    if steps == 0 {
        return Vec::new();
    }
    let base = n_masked / steps;
    let remainder = n_masked % steps;
    (0..steps)
        .map(|i| base + usize::from(i < remainder))
        .collect()
}

/// Dream's timesteps: `torch.linspace(1, eps, steps + 1)` in f32, reproducing PyTorch's
/// two-sided formula (the first half counts up from 1, the second half down from `eps`).
/// Returns `[steps + 1]`.
pub fn dream_timesteps(steps: usize, eps: f64) -> Vec<f32> {
    let n = steps + 1;
    let start = 1.0f32;
    let end = eps as f32;
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let halfway = n / 2;
    (0..n)
        .map(|i| {
            if i < halfway {
                start + step * i as f32
            } else {
                end - step * (n - i - 1) as f32
            }
        })
        .collect()
}

/// Dream's count for step `i` of `steps`: `int(n_masked * (1 - s / t))` in f32, where
/// `t = timesteps[i]`, `s = timesteps[i + 1]`; every remaining mask at the last step.
pub fn dream_transfer_count(n_masked: usize, timesteps: &[f32], i: usize, steps: usize) -> usize {
    if i + 1 >= steps || i + 1 >= timesteps.len() {
        return n_masked;
    }
    let t = timesteps[i];
    let s = timesteps[i + 1];
    let frac = 1.0f32 - s / t;
    let k = (n_masked as f32 * frac).trunc();
    if k <= 0.0 {
        0
    } else {
        (k as usize).min(n_masked)
    }
}

/// Dream `origin`'s per-position probability of being revealed at step `i`: `1 - s / t` (f32),
/// and 1 at the last step.
pub fn dream_reveal_probability(timesteps: &[f32], i: usize, steps: usize) -> f32 {
    if i + 1 >= steps || i + 1 >= timesteps.len() {
        return 1.0;
    }
    1.0f32 - timesteps[i + 1] / timesteps[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llada_even_split_with_remainder_first() {
        assert_eq!(llada_transfer_counts(8, 8), vec![1; 8]);
        assert_eq!(llada_transfer_counts(8, 3), vec![3, 3, 2]);
        assert_eq!(llada_transfer_counts(24, 12), vec![2; 12]);
        assert_eq!(llada_transfer_counts(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(llada_transfer_counts(0, 2), vec![0, 0]);
        assert!(llada_transfer_counts(5, 0).is_empty());
        for n in 0..40 {
            for steps in 1..20 {
                assert_eq!(llada_transfer_counts(n, steps).iter().sum::<usize>(), n);
            }
        }
    }

    #[test]
    fn dream_timesteps_match_linspace() {
        let t = dream_timesteps(16, 1e-3);
        assert_eq!(t.len(), 17);
        assert_eq!(t[0], 1.0);
        assert_eq!(t[16], 1e-3f32);
        for w in t.windows(2) {
            assert!(w[1] < w[0]);
        }
        // Values computed by torch.linspace(1, 1e-3, 17) (float32).
        assert!((t[1] - 0.937_562_5).abs() < 1e-7);
        assert!((t[8] - 0.500_5).abs() < 1e-7);
        assert_eq!(dream_timesteps(0, 1e-3), vec![1.0]);
    }

    #[test]
    fn dream_counts() {
        let steps = 16;
        let t = dream_timesteps(steps, 1e-3);
        // 16 masks at t = 1: 16 * 0.0624375 = 0.999, truncated to 0.
        assert_eq!(dream_transfer_count(16, &t, 0, steps), 0);
        assert_eq!(dream_transfer_count(16, &t, 1, steps), 1);
        // Everything at the last step.
        assert_eq!(dream_transfer_count(5, &t, 15, steps), 5);
        assert_eq!(dream_transfer_count(0, &t, 3, steps), 0);
        let t8 = dream_timesteps(8, 1e-3);
        assert_eq!(dream_transfer_count(16, &t8, 0, 8), 1);
        assert_eq!(dream_reveal_probability(&t, 15, steps), 1.0);
        assert!((dream_reveal_probability(&t, 0, steps) - 0.062_437_5).abs() < 1e-6);
    }
}
