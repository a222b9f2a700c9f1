//! `u64` division by a small `u32` with the 32-bit hardware divide only, so the runtime's
//! 64-bit division (`__aeabi_uldivmod` and `u64_div_rem`, about 930 bytes on Cortex-M3) is
//! not linked in for turning nanoseconds into milliseconds.

/// `n / d` for `1 <= d < 2^24` (`d` is clamped into that range). Long division one byte of
/// `n` at a time: each step divides a value below `d * 256 < 2^32`. Cost: 8 `UDIV`s.
pub(crate) fn div_u64(n: u64, d: u32) -> u64 {
    let d = d.clamp(1, 0x00FF_FFFF);
    let mut q = 0u64;
    let mut r = 0u32;
    for i in (0..8).rev() {
        let cur = (r << 8) | ((n >> (i * 8)) as u32 & 0xFF);
        q = (q << 8) | u64::from(cur / d);
        r = cur % d;
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn edges() {
        assert_eq!(div_u64(u64::MAX, 1_000_000), u64::MAX / 1_000_000);
        assert_eq!(div_u64(10_000_000_000, 115_200), 86_805);
        assert_eq!(div_u64(999_999, 1_000_000), 0);
        assert_eq!(div_u64(7, 0), 7);
        assert_eq!(div_u64(u64::MAX, 0x00FF_FFFF), u64::MAX / 0x00FF_FFFF);
    }

    proptest! {
        #[test]
        fn matches_native_division(n in any::<u64>(), d in 1u32..0x0100_0000) {
            prop_assert_eq!(div_u64(n, d), n / u64::from(d));
        }
    }
}
