//! GDBM's key hash (`_gdbm_hash`) and its two variants.
//!
//! The hash starts from `0x238F13AF * len` and adds every key byte shifted left by
//! `(5 * i) % 24` bits, keeping 31 bits, then scrambles with `1103515243 * v + 12345`.
//! Each byte is read as a C `char`, converted to `unsigned`: where `char` is signed (x86,
//! x86_64) a byte ≥ 0x80 is sign-extended (0xFF adds 0xFFFFFFFF), where it is unsigned
//! (arm64, ppc, s390x) it is not. The same key with such bytes (any UTF-8 user name)
//! hashes differently on the two kinds of machine, and libgdbm finds a key only under
//! the variant the file was written with.

use std::ffi::c_char;

/// Whether C `char` is signed on this machine (and so which hash variant the local
/// libgdbm uses).
pub const HOST_SIGNED_CHAR: bool = (c_char::MIN as i32) < 0;

/// How far byte `i` of a key is shifted: `(5 * i) % 24`, which repeats every 24 bytes.
const SHIFTS: [u32; 24] = {
    let mut s = [0u32; 24];
    let mut i = 0;
    while i < 24 {
        s[i] = (5 * i as u32) % 24;
        i += 1;
    }
    s
};

/// The 31-bit GDBM hash of a key, with `char` signed or unsigned.
///
/// libgdbm keeps 31 bits after every addition; keeping them once at the end gives the
/// same value (the sum is the same modulo 2^31), and the shifts come from a table, so
/// the loop is a shift and an add per byte.
pub fn hash(key: &[u8], signed_char: bool) -> u32 {
    let mut v = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
    for chunk in key.chunks(SHIFTS.len()) {
        if signed_char {
            for (&b, &s) in chunk.iter().zip(&SHIFTS) {
                v = v.wrapping_add((i32::from(b as i8) as u32) << s);
            }
        } else {
            for (&b, &s) in chunk.iter().zip(&SHIFTS) {
                v = v.wrapping_add(u32::from(b) << s);
            }
        }
    }
    1_103_515_243u32
        .wrapping_mul(v & 0x7FFF_FFFF)
        .wrapping_add(12345)
        & 0x7FFF_FFFF
}

/// Whether the two variants can differ on this key (it has a byte ≥ 0x80).
pub fn variants_differ(key: &[u8]) -> bool {
    key.iter().any(|&b| b >= 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_from_gdbmtool() {
        // `gdbmtool hash KEY` on x86_64 (spec §17).
        for signed in [true, false] {
            assert_eq!(hash(b"alice", signed), 0x78CF_53FD);
            assert_eq!(hash(b"bob", signed), 0x4CF1_BE3E);
            assert_eq!(hash(b"", signed), 0x0000_3039);
            assert_eq!(hash(b"a", signed), 0x094A_72E9);
        }
        assert_eq!(hash(&[0xFF], true), 0x5B60_6DF3);
        assert_eq!(hash(&[0xFF], false), 0x21AE_D8F3);
        // "bób" as gdbmtool stored it (UTF-8), x86_64: hash value = 690b9e3.
        assert_eq!(hash("bób".as_bytes(), true), 0x0690_B9E3);
        assert!(variants_differ("bób".as_bytes()));
        assert!(!variants_differ(b"bob"));
    }

    /// libgdbm's loop as written: 31 bits kept after every byte.
    fn hash_per_byte(key: &[u8], signed_char: bool) -> u32 {
        let mut v = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
        for (i, &b) in key.iter().enumerate() {
            let c = if signed_char {
                i32::from(b as i8) as u32
            } else {
                u32::from(b)
            };
            let shift = (i as u32).wrapping_mul(5) % 24;
            v = v.wrapping_add(c << shift) & 0x7FFF_FFFF;
        }
        1_103_515_243u32.wrapping_mul(v).wrapping_add(12345) & 0x7FFF_FFFF
    }

    #[test]
    fn same_as_the_per_byte_loop() {
        // Keys of every length up to three shift cycles, bytes of both halves.
        let mut x: u32 = 0x1234_5678;
        for len in 0..80 {
            for _ in 0..20 {
                let key: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                for signed in [true, false] {
                    assert_eq!(hash(&key, signed), hash_per_byte(&key, signed), "{key:?}");
                }
            }
        }
        let all_ff = [0xFFu8; 1000];
        assert_eq!(hash(&all_ff, true), hash_per_byte(&all_ff, true));
    }

    // The hash libgdbm uses here: signed `char` on x86, unsigned on Linux arm64.
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    const _: () = assert!(HOST_SIGNED_CHAR);
    #[cfg(all(target_os = "linux", target_arch = "aarch64"))]
    const _: () = assert!(!HOST_SIGNED_CHAR);
}
