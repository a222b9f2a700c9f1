//! Sector 3: the device identity (written once at provisioning) and the log of send-counter
//! reservations (cloud-proto's [`Counters`](cloud_proto::Counters) contract: the reservation
//! lives in flash, the counters themselves in retained memory).

use core::fmt;

use cloud_proto::DeviceId;
use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};

use crate::layout::{COUNTER_LOG, IDENTITY};

const IDENTITY_MAGIC: u32 = 0x4E44_4945; // "EIDN" little-endian
const IDENTITY_LEN: usize = 44;
const RECORD_LEN: u32 = 8;

pub(crate) const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Why the identity sector could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// No valid identity record (never provisioned, or corrupted): the device cannot
    /// authenticate and only sleeps.
    NotProvisioned,
    /// Provisioning needs the identity record blank; it is not.
    AlreadyProvisioned,
    /// Every counter-log record is used: re-provision the device (erase sector 3, write the
    /// identity and a reservation above the last one). At the default reservation of 1 024
    /// counters a record, that is 2 million frames.
    CounterLogFull,
    /// The flash failed.
    Flash(NorFlashErrorKind),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotProvisioned => f.write_str("no valid identity record in sector 3"),
            Self::AlreadyProvisioned => f.write_str("the identity record is not blank"),
            Self::CounterLogFull => f.write_str("the counter reservation log is full"),
            Self::Flash(k) => write!(f, "flash error: {k:?}"),
        }
    }
}

impl core::error::Error for IdentityError {}

fn flash_err<E: NorFlashError>(e: E) -> IdentityError {
    IdentityError::Flash(e.kind())
}

/// Who the device is to the cloud: its id and the 32-byte root key its cloud-proto keys are
/// derived from (`ota-cloud device add` writes both to a key file).
///
/// Stored in [`IDENTITY`]: magic `"EIDN"`, device id (u32 LE), root key, CRC-32 (IEEE) of the
/// 40 bytes before it (u32 LE); 44 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The device id.
    pub device: DeviceId,
    /// The root key (secret).
    pub root_key: [u8; 32],
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Identity")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Identity {
    fn encode(&self) -> [u8; IDENTITY_LEN] {
        let mut b = [0u8; IDENTITY_LEN];
        b[0..4].copy_from_slice(&IDENTITY_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.device.0.to_le_bytes());
        b[8..40].copy_from_slice(&self.root_key);
        let crc = CRC32.checksum(&b[..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads the identity record.
    ///
    /// Cost: one 44-byte read.
    ///
    /// # Errors
    /// [`IdentityError::NotProvisioned`] for a blank or corrupted record;
    /// [`IdentityError::Flash`].
    pub fn read<F: ReadNorFlash>(flash: &mut F) -> Result<Self, IdentityError> {
        let mut b = [0u8; IDENTITY_LEN];
        flash.read(IDENTITY.start, &mut b).map_err(flash_err)?;
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if word(0) != IDENTITY_MAGIC || word(40) != CRC32.checksum(&b[..40]) {
            return Err(IdentityError::NotProvisioned);
        }
        let mut root_key = [0u8; 32];
        root_key.copy_from_slice(&b[8..40]);
        Ok(Self {
            device: DeviceId(word(4)),
            root_key,
        })
    }

    /// Writes the identity record into a blank [`IDENTITY`] region (factory provisioning, or
    /// the simulation's virtual factory). Never erases.
    ///
    /// Cost: a 44-byte read and one 44-byte write.
    ///
    /// # Errors
    /// [`IdentityError::AlreadyProvisioned`] if the region is not blank;
    /// [`IdentityError::Flash`] (also for a flash whose write size does not divide 44).
    pub fn provision<F: NorFlash>(&self, flash: &mut F) -> Result<(), IdentityError> {
        let mut b = [0u8; IDENTITY_LEN];
        flash.read(IDENTITY.start, &mut b).map_err(flash_err)?;
        if b.iter().any(|&x| x != 0xFF) {
            return Err(IdentityError::AlreadyProvisioned);
        }
        flash
            .write(IDENTITY.start, &self.encode())
            .map_err(flash_err)
    }
}

/// The send-counter reservation log in [`COUNTER_LOG`]: append-only records of 8 bytes
/// (reservation u32 LE, its bitwise complement u32 LE). The newest valid record wins; a
/// record torn by a power cut fails its complement and is skipped (the next append goes
/// after it), so a cut never loses a reservation that was complete.
///
/// It is never erased by the application: 2 016 records, one per
/// [`AppConfig::counter_reserve`](crate::AppConfig::counter_reserve) frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterLog {
    /// The highest valid reservation, 0 when there is none.
    pub reserved_until: u32,
    /// Offset of the first blank record, `None` when the log is full.
    next: Option<u32>,
}

impl CounterLog {
    /// A log that accepts no append (before [`read`](Self::read)): nothing may be reserved
    /// without a scan.
    pub(crate) const fn unread() -> Self {
        Self {
            reserved_until: 0,
            next: None,
        }
    }

    /// Scans the log.
    ///
    /// Cost: reads the log up to its first blank record (at most 16 128 bytes, 8 at a time).
    ///
    /// # Errors
    /// [`IdentityError::Flash`].
    pub fn read<F: ReadNorFlash>(flash: &mut F) -> Result<Self, IdentityError> {
        let mut reserved_until = 0u32;
        let mut addr = COUNTER_LOG.start;
        while addr + RECORD_LEN <= COUNTER_LOG.end {
            let mut r = [0u8; RECORD_LEN as usize];
            flash.read(addr, &mut r).map_err(flash_err)?;
            if r.iter().all(|&b| b == 0xFF) {
                return Ok(Self {
                    reserved_until,
                    next: Some(addr),
                });
            }
            let v = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
            let inv = u32::from_le_bytes([r[4], r[5], r[6], r[7]]);
            if v == !inv {
                reserved_until = reserved_until.max(v);
            }
            addr += RECORD_LEN;
        }
        Ok(Self {
            reserved_until,
            next: None,
        })
    }

    /// Appends `reserved_until` as the new reservation.
    ///
    /// Cost: one 8-byte write.
    ///
    /// # Errors
    /// [`IdentityError::CounterLogFull`]; [`IdentityError::Flash`] (the record may be torn:
    /// the next [`read`](Self::read) skips it, and this log moves past it).
    pub fn append<F: NorFlash>(
        &mut self,
        flash: &mut F,
        reserved_until: u32,
    ) -> Result<(), IdentityError> {
        let at = self.next.ok_or(IdentityError::CounterLogFull)?;
        let mut r = [0u8; RECORD_LEN as usize];
        r[..4].copy_from_slice(&reserved_until.to_le_bytes());
        r[4..].copy_from_slice(&(!reserved_until).to_le_bytes());
        let after = at + RECORD_LEN;
        self.next = (after + RECORD_LEN <= COUNTER_LOG.end).then_some(after);
        flash.write(at, &r).map_err(flash_err)?;
        self.reserved_until = self.reserved_until.max(reserved_until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::SECTOR_SIZES;
    use ota_flash_sim::{Cut, CutKind, F2Flash};

    fn flash() -> F2Flash {
        F2Flash::new(&SECTOR_SIZES)
    }

    #[test]
    fn identity_round_trip_and_blank_refusal() {
        let mut f = flash();
        assert_eq!(Identity::read(&mut f), Err(IdentityError::NotProvisioned));
        let id = Identity {
            device: DeviceId(7),
            root_key: [0x5A; 32],
        };
        id.provision(&mut f).unwrap();
        assert_eq!(Identity::read(&mut f).unwrap(), id);
        assert_eq!(id.provision(&mut f), Err(IdentityError::AlreadyProvisioned));
        // One flipped bit: refused, never a wrong key.
        let mut c = f.contents()[IDENTITY.start as usize..][..44].to_vec();
        c[9] ^= 1;
        let mut g = flash();
        g.preload(IDENTITY.start, &c);
        assert_eq!(Identity::read(&mut g), Err(IdentityError::NotProvisioned));
    }

    #[test]
    fn counter_log_keeps_the_highest_and_survives_torn_records() {
        let mut f = flash();
        let mut log = CounterLog::read(&mut f).unwrap();
        assert_eq!(log.reserved_until, 0);
        log.append(&mut f, 1024).unwrap();
        log.append(&mut f, 2048).unwrap();
        assert_eq!(CounterLog::read(&mut f).unwrap().reserved_until, 2048);
        // A torn append: the old reservation stands, the next append goes after the tear.
        let ops = f.stats().ops;
        f.schedule_cut(Cut {
            at: ops,
            kind: CutKind::Torn,
        });
        assert!(log.append(&mut f, 3072).is_err());
        f.power_on();
        let mut log = CounterLog::read(&mut f).unwrap();
        assert_eq!(log.reserved_until, 2048);
        log.append(&mut f, 4096).unwrap();
        assert_eq!(CounterLog::read(&mut f).unwrap().reserved_until, 4096);
    }

    #[test]
    fn counter_log_reports_full() {
        let mut f = flash();
        let mut log = CounterLog::read(&mut f).unwrap();
        for i in 1..=2016u32 {
            log.append(&mut f, i).unwrap();
        }
        assert_eq!(log.append(&mut f, 5000), Err(IdentityError::CounterLogFull));
        let log = CounterLog::read(&mut f).unwrap();
        assert_eq!(log.reserved_until, 2016);
        assert_eq!(log.next, None);
    }
}
