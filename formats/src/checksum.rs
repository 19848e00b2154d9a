//! `dlmh64`, the 64-bit checksum of tensor data: four independent multiply-rotate lanes over
//! 32-byte stripes, folded with the length and finished with an avalanche. Not cryptographic;
//! it catches corruption (every change confined to one 8-byte word is always detected) and runs
//! at memory speed. `SPEC.md` defines it exactly.

/// The lane multiplier (2^64 / golden ratio, odd).
const M: u64 = 0x9E37_79B9_7F4A_7C15;

/// Initial lane values (hex digits of pi).
const SEED: [u64; 4] = [
    0x243F_6A88_85A3_08D3,
    0x1319_8A2E_0370_7344,
    0xA409_3822_299F_31D0,
    0x082E_FA98_EC4E_6C89,
];

/// Bytes consumed by one step of the four lanes.
const STRIPE: usize = 32;

/// One lane step: a bijection of `v` for every word `w`.
#[inline(always)]
fn lane(v: u64, w: u64) -> u64 {
    (v ^ w).wrapping_mul(M).rotate_left(31)
}

/// The little-endian u64 at `b[i..i + 8]`.
#[inline(always)]
fn le64(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// Feed one 32-byte stripe to the lanes.
#[inline(always)]
fn stripe(v: &mut [u64; 4], s: &[u8]) {
    v[0] = lane(v[0], le64(s, 0));
    v[1] = lane(v[1], le64(s, 8));
    v[2] = lane(v[2], le64(s, 16));
    v[3] = lane(v[3], le64(s, 24));
}

/// Streaming `dlmh64`: `update` in any pieces gives the same value as [`dlmh64`] on the whole.
#[derive(Debug, Clone)]
pub struct Dlmh64 {
    lanes: [u64; 4],
    /// Bytes of an incomplete stripe.
    buf: [u8; STRIPE],
    buf_len: usize,
    total_len: u64,
}

impl Default for Dlmh64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Dlmh64 {
    /// A hasher that has seen no bytes.
    pub fn new() -> Self {
        Dlmh64 {
            lanes: SEED,
            buf: [0; STRIPE],
            buf_len: 0,
            total_len: 0,
        }
    }

    /// Feed `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total_len = self.total_len.wrapping_add(data.len() as u64);
        if self.buf_len > 0 {
            let take = (STRIPE - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < STRIPE {
                return;
            }
            let buf = self.buf;
            stripe(&mut self.lanes, &buf);
            self.buf_len = 0;
        }
        let mut chunks = data.chunks_exact(STRIPE);
        for s in &mut chunks {
            stripe(&mut self.lanes, s);
        }
        let rest = chunks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    /// The checksum of everything fed so far.
    pub fn finish(&self) -> u64 {
        let mut v = self.lanes;
        if self.buf_len > 0 {
            let mut last = [0u8; STRIPE];
            last[..self.buf_len].copy_from_slice(&self.buf[..self.buf_len]);
            stripe(&mut v, &last);
        }
        let mut h = self.total_len;
        for x in v {
            h = (h ^ x).wrapping_mul(M).rotate_left(27);
        }
        // Murmur3's fmix64: a bijective avalanche.
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
    }
}

/// The `dlmh64` checksum of `data`.
pub fn dlmh64(data: &[u8]) -> u64 {
    let mut h = Dlmh64::new();
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn streaming_in_any_pieces_equals_one_shot() {
        for n in [0usize, 1, 7, 8, 31, 32, 33, 63, 64, 65, 200] {
            let data = pattern(n);
            let whole = dlmh64(&data);
            for piece in [1usize, 3, 5, 31, 32, 33, 100] {
                let mut h = Dlmh64::new();
                for c in data.chunks(piece) {
                    h.update(c);
                }
                assert_eq!(h.finish(), whole, "n={n} piece={piece}");
            }
        }
    }

    #[test]
    fn length_and_every_single_byte_change_matter() {
        // Zero padding is not confused with real zero bytes.
        let mut seen = std::collections::HashSet::new();
        for n in 0..100 {
            assert!(
                seen.insert(dlmh64(&vec![0u8; n])),
                "zeros of length {n} collide"
            );
        }
        let data = pattern(97);
        let base = dlmh64(&data);
        for i in 0..data.len() {
            for bit in 0..8 {
                let mut d = data.clone();
                d[i] ^= 1 << bit;
                assert_ne!(dlmh64(&d), base, "flip of byte {i} bit {bit} undetected");
            }
        }
    }

    #[test]
    fn test_vectors_from_spec() {
        // These values are printed in SPEC.md; a change here is a format change.
        assert_eq!(dlmh64(b""), 0x65e3_6a68_ec7a_2f17);
        assert_eq!(dlmh64(b"a"), 0x6230_6de0_3210_7744);
        assert_eq!(dlmh64(b"DLM\0"), 0x133e_c273_0dbf_db44);
        assert_eq!(dlmh64(&pattern(100)), 0x2140_4997_eed2_dfb1);
    }
}
