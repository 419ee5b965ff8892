//! A fast non-cryptographic hasher for the string-keyed maps of the
//! analyses (1.3 M image keys, worker and page ids). Keys come from local
//! files the user chose, so flooding resistance is not needed.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate hashing of 8-byte words (the FxHash scheme).
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl FastHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // The multiply only carries entropy upwards, and the table picks its
        // bucket from the low bits: without a final mix, keys that differ
        // late (`n01440764_10000` vs `n01440764_10001`) share buckets and
        // every lookup walks long probe chains. The murmur3 finaliser spreads
        // every input bit over the whole word.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_work_and_hashes_differ() {
        let mut m: FastMap<String, u32> = FastMap::default();
        for i in 0..10_000u32 {
            m.insert(format!("n01440764_{i}"), i);
        }
        assert_eq!(m.len(), 10_000);
        assert_eq!(m["n01440764_1234"], 1234);
        let h = |s: &str| {
            let mut x = FastHasher::default();
            x.write(s.as_bytes());
            x.finish()
        };
        assert_ne!(h("ab"), h("ab\0"));
        assert_ne!(h("n01440764_1"), h("n01440764_2"));
    }

    #[test]
    fn low_bits_spread_over_similar_keys() {
        // The table indexes by the low bits: image keys that differ only in
        // their last digits must still fill most of 4096 buckets.
        let h = |s: &str| {
            let mut x = FastHasher::default();
            x.write(s.as_bytes());
            x.write_u8(0xff);
            x.finish()
        };
        let mut used = std::collections::HashSet::new();
        for i in 0..4096u32 {
            used.insert(h(&format!("n01440764_{}", 10000 + i)) & 4095);
        }
        // Uniform hashing fills 1 - 1/e ≈ 63% of the buckets.
        assert!(used.len() > 2400, "only {} of 4096 low-bit buckets used", used.len());
    }
}
