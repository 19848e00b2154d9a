//! What the kernel test files share: a seeded generator, the lengths that break blocking code,
//! and the fast kernel tables this CPU has.
#![allow(dead_code)]

use dlm_simd::Kernels;

/// A small seeded generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// The lengths STYLE.md names: around every power-of-two block edge.
pub const LENGTHS: [usize; 13] = [0, 1, 2, 3, 7, 8, 31, 32, 33, 255, 256, 257, 4096];

/// The fast tables this CPU supports (the scalar one is always tested besides them).
pub fn fast_tables() -> Vec<&'static Kernels> {
    let t: Vec<_> = [Kernels::avx2(), Kernels::neon()]
        .into_iter()
        .flatten()
        .collect();
    if t.is_empty() {
        println!("no fast kernel table on this CPU: only the scalar table is tested");
    }
    t
}
