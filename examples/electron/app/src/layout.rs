//! The Electron's internal flash, as the application, the bootloader and the simulation share
//! it. Offsets are from the start of the flash (0x0800_0000 on the STM32F205), the addresses
//! `embedded-storage` uses.
//!
//! | sector | offset | size | use |
//! |---|---|---|---|
//! | 0 | `0x0_0000` | 16 KB | bootloader |
//! | 1–2 | `0x0_4000` | 2 × 16 KB | ota-core state log ([`LAYOUT`]`.state`) |
//! | 3 | `0x0_C000` | 16 KB | device identity ([`IDENTITY`]) and the send-counter reservation log ([`COUNTER_LOG`]) |
//! | 4 | `0x1_0000` | 64 KB | ota-core download progress: manifest copy and chunk markers ([`LAYOUT`]`.progress`) |
//! | 5–7 | `0x2_0000` | 3 × 128 KB | active image (the bootloader jumps here) |
//! | 8–10 | `0x8_0000` | 3 × 128 KB | staging: the download |
//! | 11 | `0xE_0000` | 128 KB | scratch for the install swap and chunk repairs |

use ota_core::{Layout, Region, SectorMap};

/// The STM32F205RG sector map: 4 × 16 KB, 1 × 64 KB, 7 × 128 KB.
pub const FLASH_MAP: SectorMap = SectorMap::STM32F2_1M;

/// The same map as one size per sector, from offset 0 (what `ota_flash_sim::SimFlash::new`
/// takes).
pub const SECTOR_SIZES: [usize; 12] = [
    16 * 1024,
    16 * 1024,
    16 * 1024,
    16 * 1024,
    64 * 1024,
    128 * 1024,
    128 * 1024,
    128 * 1024,
    128 * 1024,
    128 * 1024,
    128 * 1024,
    128 * 1024,
];

/// The regions ota-core manages (state, progress, active, staging, scratch): ota-core's
/// [`Layout::ELECTRON`], which the bootloader opens too. Changing it makes ota-core refuse
/// the state written under the old one (`OpenError::LayoutMismatch`).
pub const LAYOUT: Layout = Layout::ELECTRON;

/// Sector 3, which ota-core does not touch: the identity record, then the counter log.
pub const IDENTITY_SECTOR: Region = Region::new(0x0_C000, 0x1_0000);

/// The identity record (device id and root key), written once at provisioning
/// ([`Identity::provision`](crate::Identity::provision)); 256 bytes reserved.
pub const IDENTITY: Region = Region::new(0x0_C000, 0x0_C100);

/// The send-counter reservation log: 8-byte records appended after every
/// [`AppConfig::counter_reserve`](crate::AppConfig::counter_reserve) frames (see
/// [`CounterLog`](crate::CounterLog)); 2 016 records.
pub const COUNTER_LOG: Region = Region::new(0x0_C100, 0x1_0000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_map_and_regions_do_not_overlap() {
        let total: usize = SECTOR_SIZES.iter().sum();
        assert_eq!(total as u64, FLASH_MAP.capacity());
        assert_eq!(LAYOUT.validate(4, 1), Ok(()));
        // Sector 3 lies between the state log and the progress region, outside every
        // ota-core region.
        assert_eq!(LAYOUT.state.end, IDENTITY_SECTOR.start);
        assert_eq!(LAYOUT.progress.start, IDENTITY_SECTOR.end);
        assert_eq!(IDENTITY.end, COUNTER_LOG.start);
        assert_eq!(COUNTER_LOG.end, IDENTITY_SECTOR.end);
        assert_eq!((COUNTER_LOG.end - COUNTER_LOG.start) / 8, 2016);
    }
}
