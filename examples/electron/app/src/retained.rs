//! What one wake leaves for the next in retained memory (the backup SRAM).

use cloud_proto::{Counters, UpdateId};

use crate::identity::CRC32;

/// Bytes of retained memory the wake uses ([`RetainedState::encode`]).
pub const RETAINED_LEN: usize = 64;

const MAGIC: u32 = 0x5452_4C45; // "ELRT" little-endian

/// The state that survives deep sleep and is lost with power.
///
/// Layout (little-endian): magic `"ELRT"` (4), cloud-proto counters as
/// [`Counters::to_retained`] with their own CRC (12), forced sleeps (u16), flags (u8: bit 0
/// update id valid), consecutive failed wakes (u8), update id (u32), wakes (u32), reserved up
/// to byte 60,
/// CRC-32 (IEEE) of bytes 0..60 (u32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetainedState {
    /// The send counters (`None`: unknown, start from the flash reservation).
    pub counters: Option<Counters>,
    /// Sleeps the awake budget forced since the last check-in the cloud answered.
    pub forced_sleeps: u16,
    /// The server's id of the update being downloaded, installed or tried: status reports
    /// (`UpdateStatus`) need it after a reset.
    pub update: Option<UpdateId>,
    /// Wakes since retained memory was last lost.
    pub wakes: u32,
    /// Consecutive wakes that failed (no check-in, or a link or flash error): the retry
    /// sleep doubles with each, up to [`AppConfig::default_sleep_s`](crate::AppConfig::default_sleep_s).
    pub failures: u8,
}

impl RetainedState {
    /// Encodes for [`Board::store_retained`](crate::Board::store_retained).
    pub fn encode(&self) -> [u8; RETAINED_LEN] {
        let mut b = [0u8; RETAINED_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        if let Some(c) = self.counters {
            b[4..16].copy_from_slice(&c.to_retained());
        }
        b[16..18].copy_from_slice(&self.forced_sleeps.to_le_bytes());
        if let Some(u) = self.update {
            b[18] = 1;
            b[20..24].copy_from_slice(&u.0.to_le_bytes());
        }
        b[19] = self.failures;
        b[24..28].copy_from_slice(&self.wakes.to_le_bytes());
        let crc = CRC32.checksum(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes what [`Board::load_retained`](crate::Board::load_retained) read; `None` when
    /// the magic or the CRC does not match (power was lost, or the memory was never written).
    pub fn decode(b: &[u8; RETAINED_LEN]) -> Option<Self> {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if word(0) != MAGIC || word(60) != CRC32.checksum(&b[..60]) {
            return None;
        }
        let mut c = [0u8; Counters::RETAINED_LEN];
        c.copy_from_slice(&b[4..16]);
        Some(Self {
            counters: Counters::from_retained(&c),
            forced_sleeps: u16::from_le_bytes([b[16], b[17]]),
            update: (b[18] & 1 == 1).then(|| UpdateId(word(20))),
            wakes: word(24),
            failures: b[19],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let s = RetainedState {
            counters: Some(Counters {
                next: 70,
                reserved_until: 1024,
            }),
            forced_sleeps: 3,
            update: Some(UpdateId(9)),
            wakes: 12,
            failures: 2,
        };
        let b = s.encode();
        assert_eq!(RetainedState::decode(&b), Some(s));
        for i in 0..RETAINED_LEN {
            let mut c = b;
            c[i] ^= 0x10;
            assert_eq!(RetainedState::decode(&c), None, "byte {i}");
        }
        assert_eq!(RetainedState::decode(&[0; RETAINED_LEN]), None);
        assert_eq!(RetainedState::decode(&[0xFF; RETAINED_LEN]), None);
        let none = RetainedState::default();
        assert_eq!(RetainedState::decode(&none.encode()), Some(none));
    }
}
