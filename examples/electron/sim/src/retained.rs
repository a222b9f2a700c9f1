//! The F205's 4 KB backup SRAM (`0x4002_4000`), the only RAM that survives STANDBY.
//!
//! # The model, and why
//! * **Deep sleep keeps it**: with the backup regulator on (Device OS turns BRE on for
//!   retained memory; research `electron-board.md` §4), STANDBY preserves the backup domain.
//! * **A power cut loses it** by default ([`BackupPower::None`]): the Electron has no coin cell
//!   of its own on VBAT in this model, so when the supply goes the backup domain goes with
//!   it. What SRAM holds after power returns is undefined; the model fills it with
//!   pseudo-random bytes from the run's seed rather than zeros, so an application that
//!   trusts retained state without a check value (magic, CRC) fails visibly and
//!   deterministically instead of seeing a plausible "all zero" state.
//! * [`BackupPower::Battery`] models a board whose VBAT stays up through the cut: contents kept.

/// Size of the backup SRAM (RM0033, "Backup SRAM": 4 Kbytes).
pub const BACKUP_SRAM_LEN: usize = 4096;

/// What keeps the backup domain up when the main supply is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackupPower {
    /// Nothing: a power cut loses retained memory (the default).
    #[default]
    None,
    /// A backup battery on VBAT: a power cut keeps retained memory.
    Battery,
}

/// The backup SRAM of one virtual Electron.
#[derive(Clone, PartialEq, Eq)]
pub struct RetainedMemory {
    bytes: Box<[u8; BACKUP_SRAM_LEN]>,
    backup: BackupPower,
    garbage_seed: u64,
    cuts: u64,
}

impl core::fmt::Debug for RetainedMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RetainedMemory")
            .field("backup", &self.backup)
            .field("cuts", &self.cuts)
            .finish_non_exhaustive()
    }
}

impl RetainedMemory {
    /// Backup SRAM as at the first power-up (undefined contents: garbage from `seed`).
    pub fn new(backup: BackupPower, seed: u64) -> Self {
        let mut m = Self {
            bytes: Box::new([0; BACKUP_SRAM_LEN]),
            backup,
            garbage_seed: seed,
            cuts: 0,
        };
        m.scramble();
        m
    }

    /// The contents.
    pub fn bytes(&self) -> &[u8; BACKUP_SRAM_LEN] {
        &self.bytes
    }

    /// The contents, for the application to write.
    pub fn bytes_mut(&mut self) -> &mut [u8; BACKUP_SRAM_LEN] {
        &mut self.bytes
    }

    /// The backup power model.
    pub fn backup(&self) -> BackupPower {
        self.backup
    }

    /// Deep sleep and the wake's reset: contents kept (a no-op, named so the wake loop says
    /// what happens).
    pub fn handle_deep_sleep(&mut self) {}

    /// The main supply is cut and comes back: contents lost (garbage) unless a backup battery
    /// holds the domain up. Returns `true` when the contents were lost.
    pub fn handle_power_cut(&mut self) -> bool {
        self.cuts += 1;
        match self.backup {
            BackupPower::Battery => false,
            BackupPower::None => {
                self.scramble();
                true
            }
        }
    }

    fn scramble(&mut self) {
        let mut rng = crate::link::SplitMix64::new(self.garbage_seed ^ self.cuts.rotate_left(32));
        for chunk in self.bytes.chunks_mut(8) {
            let v = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_deep_sleep() {
        let mut m = RetainedMemory::new(BackupPower::None, 7);
        m.bytes_mut()[..4].copy_from_slice(b"OTA1");
        m.bytes_mut()[4095] = 0x42;
        m.handle_deep_sleep();
        assert_eq!(&m.bytes()[..4], b"OTA1");
        assert_eq!(m.bytes()[4095], 0x42);
    }

    #[test]
    fn lost_on_a_power_cut_without_backup_battery() {
        let mut m = RetainedMemory::new(BackupPower::None, 7);
        m.bytes_mut().fill(0xA5);
        assert!(m.handle_power_cut());
        assert_ne!(m.bytes()[..16], [0xA5; 16]);
        // Deterministic garbage: the same seed and history give the same bytes.
        let mut again = RetainedMemory::new(BackupPower::None, 7);
        again.handle_power_cut();
        assert_eq!(m.bytes(), again.bytes());
    }

    #[test]
    fn kept_through_a_cut_with_a_backup_battery() {
        let mut m = RetainedMemory::new(BackupPower::Battery, 7);
        m.bytes_mut().fill(0xA5);
        assert!(!m.handle_power_cut());
        assert_eq!(m.bytes(), &[0xA5; BACKUP_SRAM_LEN]);
    }
}
