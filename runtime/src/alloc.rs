//! Fallible allocation of the large buffers whose size comes from a file or a request, so a
//! process under a memory limit (`ulimit -v`, a container) gets an error instead of an abort.

use crate::RuntimeError;

/// Ask the allocator for `bytes` and give them back: an error naming `what` when they cannot
/// be had. Used before building a buffer whose size a file or request chose, where the
/// building code itself allocates infallibly.
pub(crate) fn check_bytes(bytes: usize, what: &str) -> Result<(), RuntimeError> {
    let mut probe: Vec<u8> = Vec::new();
    let got = probe
        .try_reserve_exact(bytes)
        .map_err(|_| RuntimeError::OutOfMemory {
            what: what.to_string(),
            bytes,
        });
    // Without this the optimizer may remove the unused allocation and assume it succeeded
    // (release builds answered Ok for usize::MAX / 2 bytes).
    std::hint::black_box(&mut probe);
    got
}

/// A zeroed `[len]` f32 buffer, allocated fallibly (the CPU backend's activations and cache).
pub(crate) fn zeroed_f32(len: usize, what: &str) -> Result<Vec<f32>, RuntimeError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| RuntimeError::OutOfMemory {
            what: what.to_string(),
            bytes: len.saturating_mul(4),
        })?;
    v.resize(len, 0.0);
    Ok(v)
}

/// `a * b * c` in bytes, saturating (a saturated size then fails [`check_bytes`]).
pub(crate) fn product(parts: &[usize]) -> usize {
    parts.iter().fold(1usize, |acc, &p| acc.saturating_mul(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_sizes_are_errors_not_aborts() {
        check_bytes(1 << 20, "a small buffer").unwrap();
        let e = check_bytes(usize::MAX / 2, "the logits").unwrap_err();
        assert!(matches!(e, RuntimeError::OutOfMemory { .. }), "{e}");
        assert!(e.to_string().contains("the logits"), "{e}");
        assert_eq!(product(&[usize::MAX, 2]), usize::MAX);
    }
}
