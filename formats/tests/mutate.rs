//! Seeded byte mutations of a valid file: the parser may reject or accept, but never panics,
//! and whatever it accepts is safe to read.

mod common;

use common::*;
use dlm_formats::DlmFile;

/// Knuth's MMIX linear congruential generator; the high bits are the usable ones.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 32
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values that tend to reach edge cases when written over a count, length or offset.
const INTERESTING: [u64; 10] = [0, 1, 2, 63, 64, 65, 0xFF, 0xFFFF_FFFF, u64::MAX, 1 << 63];

#[test]
fn mutations_never_panic() {
    let good = sample_file();
    let dir_end = {
        let e = entries(&good);
        e.last().unwrap().checksum_at + 8
    };
    let mut rng = Lcg(0x5EED_D1A6);
    let mut accepted = 0;
    for round in 0..6000 {
        let mut b = good.clone();
        for _ in 0..1 + rng.below(4) {
            // Mostly the structured part (header, metadata, directory), sometimes anywhere.
            let span = if rng.below(4) == 0 {
                b.len()
            } else {
                dir_end.min(b.len())
            };
            if span == 0 {
                break;
            }
            let at = rng.below(span);
            match rng.below(4) {
                0 => b[at] ^= 1 << rng.below(8),
                1 => b[at] = rng.next() as u8,
                2 => {
                    let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                    let w = if rng.below(2) == 0 { 4 } else { 8 };
                    let end = (at + w).min(b.len());
                    b[at..end].copy_from_slice(&v[..end - at]);
                }
                _ => {
                    // Truncate or extend, keeping the header's size field honest half the time.
                    let new_len = rng.below(good.len() + 128);
                    b.resize(new_len, 0);
                    if new_len >= 64 && rng.below(2) == 0 {
                        wr_u64(&mut b, 56, new_len as u64);
                    }
                }
            }
        }
        if let Ok(f) = DlmFile::parse(&b) {
            accepted += 1;
            // Accepted files must be safe to use: every tensor range in bounds, aligned.
            for t in &f.tensors {
                let data = f.tensor_bytes(&b, t);
                assert_eq!(data.len() as u64, t.len_bytes, "round {round}");
                assert_eq!(t.offset % 64, 0);
            }
            let _ = f.verify_checksums(&b);
        }
    }
    println!("accepted {accepted} of 6000 mutated files");
    // Some mutations land in tensor data or values and are accepted; most are rejected.
    assert!(accepted > 0 && accepted < 6000, "accepted {accepted}");
}
