//! The byte scan shared by the JSON readers: [`scan_plain`] skips the plain
//! bytes of a string body eight at a time. The context reader and the
//! validator (`check`) both stop where it stops.

/// Bytes that end the fast scan of a string: `"`, `\` and control characters.
const STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The first index from `i` on of a `"`, `\\` or control character (or
/// the end) of a JSON string body: eight bytes at a time. The lowest
/// flagged byte of a word is always a real match (borrows only run towards
/// higher bytes).
#[inline]
pub(crate) fn scan_plain(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while i + 8 <= b.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        let v = u64::from_le_bytes(w);
        let q = v ^ (LO * b'"' as u64);
        let e = v ^ (LO * b'\\' as u64);
        let m = ((q.wrapping_sub(LO) & !q)
            | (e.wrapping_sub(LO) & !e)
            | (v.wrapping_sub(LO * 0x20) & !v))
            & HI;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !STOP[b[i] as usize] {
        i += 1;
    }
    i
}
