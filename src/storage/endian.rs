//! Byte order as a runtime value.
//!
//! On-disk formats here store integers in the byte order of the machine that wrote
//! them (Berkeley DB files can be big-endian on a little-endian host). Every reader
//! and writer takes an [`Endian`] detected from the file, never the host's order.
//! The accessors index slices directly: callers bounds-check offsets first (page
//! buffers are always a full page long, header offsets are constants).

/// The byte order of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endian {
    /// Least significant byte first (x86, arm64).
    Little,
    /// Most significant byte first (s390x, SPARC, old PowerPC).
    Big,
}

impl Endian {
    /// Reads a u16 at `off`.
    #[inline]
    pub fn u16(self, b: &[u8], off: usize) -> u16 {
        let a: [u8; 2] = [b[off], b[off + 1]];
        match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        }
    }

    /// Reads a u32 at `off`.
    #[inline]
    pub fn u32(self, b: &[u8], off: usize) -> u32 {
        let a: [u8; 4] = b[off..off + 4].try_into().expect("4 bytes");
        match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }

    /// Reads a u64 at `off`.
    #[inline]
    pub fn u64(self, b: &[u8], off: usize) -> u64 {
        let a: [u8; 8] = b[off..off + 8].try_into().expect("8 bytes");
        match self {
            Endian::Little => u64::from_le_bytes(a),
            Endian::Big => u64::from_be_bytes(a),
        }
    }

    /// Writes a u16 at `off`.
    #[inline]
    pub fn put_u16(self, b: &mut [u8], off: usize, v: u16) {
        let a = match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        b[off..off + 2].copy_from_slice(&a);
    }

    /// Writes a u32 at `off`.
    #[inline]
    pub fn put_u32(self, b: &mut [u8], off: usize, v: u32) {
        let a = match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        b[off..off + 4].copy_from_slice(&a);
    }

    /// Writes a u64 at `off`.
    #[inline]
    pub fn put_u64(self, b: &mut [u8], off: usize, v: u64) {
        let a = match self {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        b[off..off + 8].copy_from_slice(&a);
    }

    /// Whether this is big-endian.
    pub fn is_big(self) -> bool {
        self == Endian::Big
    }
}

#[cfg(test)]
mod tests {
    use super::Endian;

    #[test]
    fn round_trips_both_orders() {
        let mut b = [0u8; 16];
        Endian::Big.put_u32(&mut b, 0, 0x0006_1561);
        assert_eq!(&b[..4], &[0x00, 0x06, 0x15, 0x61]);
        assert_eq!(Endian::Big.u32(&b, 0), 0x0006_1561);
        Endian::Little.put_u32(&mut b, 4, 0x0006_1561);
        assert_eq!(&b[4..8], &[0x61, 0x15, 0x06, 0x00]);
        Endian::Little.put_u16(&mut b, 8, 0x0102);
        assert_eq!(&b[8..10], &[2, 1]);
        assert_eq!(Endian::Little.u16(&b, 8), 0x0102);
        Endian::Big.put_u64(&mut b, 8, 0x0102_0304_0506_0708);
        assert_eq!(Endian::Big.u64(&b, 8), 0x0102_0304_0506_0708);
        assert_eq!(Endian::Little.u64(&b, 8), 0x0807_0605_0403_0201);
    }
}
