//! Berkeley DB's hash functions and bucket addressing.
//!
//! - [`func5`]: the default key hash of hash versions 5 and later (`__ham_func5`).
//!   It is FNV-1 with an initial value of 0: multiply by the FNV prime, then XOR the
//!   byte. Not FNV-1a, and not the standard offset basis.
//! - [`func4`]: `h = h * 33 + byte` from 0 (`__ham_func4`), which libdb also uses as
//!   the page checksum when a file is not encrypted.
//! - [`bucket_of`] and [`bucket_page`]: linear hashing's key → bucket → page map.

/// Hash of the 12 bytes `"%$sniglet^&"` plus its NUL under [`func5`]; libdb stores
/// it in the meta page (`h_charkey`) to identify the hash function.
pub const CHARKEY_HASH: u32 = 0x5E68_8DD1;

/// The string libdb hashes into `h_charkey`, trailing NUL included.
#[cfg(test)]
pub const CHARKEY: &[u8; 12] = b"%$sniglet^&\0";

/// libdb's default key hash (`__ham_func5`).
#[inline]
pub fn func5(key: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in key {
        h = h.wrapping_mul(16_777_619) ^ u32::from(b);
    }
    h
}

/// libdb's `__ham_func4`, used for page checksums.
#[inline]
pub fn func4(data: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in data {
        h = h.wrapping_mul(33).wrapping_add(u32::from(b));
    }
    h
}

/// Smallest `i` with `2^i >= n` (`__db_log2`): 0 for 0 and 1.
#[inline]
pub fn log2c(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

/// The bucket a hash falls in, given the meta page's masks.
#[inline]
pub fn bucket_of(hash: u32, max_bucket: u32, high_mask: u32, low_mask: u32) -> u32 {
    let b = hash & high_mask;
    if b > max_bucket { b & low_mask } else { b }
}

/// The first page of a bucket: `bucket + spares[log2c(bucket + 1)]`.
/// `None` when the result overflows a page number.
#[inline]
pub fn bucket_page(bucket: u32, spares: &[u32; 32]) -> Option<u32> {
    let idx = log2c(bucket.checked_add(1)?) as usize;
    bucket.checked_add(*spares.get(idx)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn func5_vectors() {
        // Vectors from libdb-written files (spec §8.1).
        assert_eq!(func5(CHARKEY), CHARKEY_HASH);
        assert_eq!(func5(b""), 0);
        assert_eq!(func5(b"a"), 0x61);
        assert_eq!(func5(b"ab"), 0x6100_98D1);
        assert_eq!(func5(b"abc"), 0x84F0_9160);
        assert_eq!(func5(b"hello"), 0xEC6D_6BE8);
        assert_eq!(func5(b"alice\0example.com\0userPassword"), 0x7FD9_955F);
        assert_eq!(func5(b"%$sniglet^&"), 0x9F55_618B);
    }

    #[test]
    fn func4_vectors() {
        assert_eq!(func4(CHARKEY), 0x956E_7DE3);
        assert_eq!(func4(b"abc"), 0x0001_A9A6);
        assert_eq!(func4(b"a"), 0x61);
    }

    #[test]
    fn log2c_table() {
        for (n, l) in [
            (0, 0),
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (8, 3),
            (9, 4),
            (512, 9),
        ] {
            assert_eq!(log2c(n), l, "log2c({n})");
        }
        assert_eq!(log2c(u32::MAX), 32);
    }

    #[test]
    fn addressing_matches_libdb_file() {
        // large_4096.db: max_bucket 49, high 0x3F, low 0x1F.
        assert_eq!(bucket_of(0xB3D1_A62B, 49, 0x3F, 0x1F), 43);
        assert_eq!(bucket_of(0xB208_DCF2, 49, 0x3F, 0x1F), 18);
        // large_512.db spares.
        let mut spares = [0u32; 32];
        spares[..10].copy_from_slice(&[1, 1, 2, 3, 3, 5, 10, 13, 28, 84]);
        let pages: Vec<u32> = [0, 1, 2, 3, 4, 7, 256, 511]
            .iter()
            .map(|&b| bucket_page(b, &spares).unwrap())
            .collect();
        assert_eq!(pages, [1, 2, 4, 5, 7, 10, 340, 595]);
    }
}
