//! A *strict*, deterministic simulated NOR flash for host-side tests.
//!
//! [`SimFlash`] implements the [`embedded_storage::nor_flash`] traits
//! ([`ReadNorFlash`], [`NorFlash`] and, when the `MULTIWRITE` parameter is
//! `true`, [`MultiwriteNorFlash`]) on top of a plain `Vec<u8>`, and enforces
//! every rule a real NOR part imposes:
//!
//! * writes must be aligned to `WRITE_SIZE` (offset and length) and stay in
//!   bounds;
//! * without multiwrite, every word touched by a write must be fully erased
//!   (all `0xFF`); with multiwrite a write may only clear bits;
//! * erases must start and end exactly on *physical* sector boundaries of a
//!   (possibly non-uniform) sector map.
//!
//! Violations are reported as [`SimError`]s (never panics on trait calls), and a
//! rejected operation changes nothing and is not counted.
//!
//! On top of that it can inject a power cut at any mutating operation
//! ([`Cut`], [`CutKind`]), which is how power-loss tests of the bootloader
//! enumerate every possible interruption point: run the scenario once, read
//! [`Stats::ops`], then replay it with a cut scheduled at each index `0..ops`
//! and each kind of [`CutKind::all`]. A torn cut's shape ([`Tear`]) is
//! chosen by the test: where a write stops, what its torn word reads, how much
//! of a sector an erase erased.
//!
//! Faults other than power cuts ([`SimFlash::inject`], [`Fault`]) leave the
//! power on: a write or erase that returns [`SimError::Failed`] after doing
//! nothing, all or part of its work ([`FaultKind::Error`]), or one that returns
//! `Ok(())` but did not do all of it ([`FaultKind::Silent`]), so that only a
//! read-back notices.
//!
//! # Example
//!
//! ```
//! use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
//! use ota_flash_sim::{Cut, CutKind, SimError, SimFlash};
//!
//! // 4-byte words, 1 KiB minimum sector, 2×1 KiB + 1×2 KiB sectors.
//! let mut flash = SimFlash::<4, 1024, false>::new(&[1024, 1024, 2048]);
//! flash.write(0, &[1, 2, 3, 4]).unwrap();
//! // Programming a word twice without erasing is refused.
//! assert_eq!(flash.write(0, &[0, 0, 0, 0]), Err(SimError::NotErased { addr: 0 }));
//!
//! // Cut the power in the middle of the next mutating operation (index 1).
//! flash.schedule_cut(Cut { at: 1, kind: CutKind::Before });
//! assert_eq!(flash.erase(0, 1024), Err(SimError::PowerLost));
//! assert!(flash.is_powered_off());
//! flash.power_on();
//! let mut buf = [0u8; 4];
//! flash.read(0, &mut buf).unwrap();
//! assert_eq!(buf, [1, 2, 3, 4]); // the erase never happened
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use core::fmt;
use core::ops::Range;

use embedded_storage::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// STM32F2-like flash: 4-byte program words, smallest sector 16 KiB, no multiwrite.
pub type F2Flash = SimFlash<4, 16384, false>;

/// Errors returned by [`SimFlash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// An offset or length is not a multiple of the required granularity
    /// (`WRITE_SIZE` for writes, `ERASE_SIZE` for erases).
    NotAligned,
    /// The accessed range does not lie entirely inside the flash.
    OutOfBounds,
    /// A write targets a word that is not erased (single-write flash) or would
    /// need a `0 → 1` bit transition (multiwrite flash). `addr` is the address
    /// of the first offending word. Nothing was written.
    NotErased {
        /// Address of the first offending `WRITE_SIZE` word.
        addr: u32,
    },
    /// An erase range is empty/reversed or does not start and end exactly on
    /// physical sector boundaries.
    BadEraseRange,
    /// The (simulated) power is off: a scheduled [`Cut`] fired. Every access
    /// fails with this error until [`SimFlash::power_on`].
    PowerLost,
    /// The part reported a program or erase error: an injected
    /// [`FaultKind::Error`]. Power stays on; what the operation left is the
    /// fault's [`Effect`].
    Failed,
}

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SimError::NotAligned => NorFlashErrorKind::NotAligned,
            SimError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::NotAligned => f.write_str("flash access not aligned"),
            SimError::OutOfBounds => f.write_str("flash access out of bounds"),
            SimError::NotErased { addr } => {
                write!(
                    f,
                    "flash word at {addr:#010x} is not erased (or a bit would go 0 -> 1)"
                )
            }
            SimError::BadEraseRange => {
                f.write_str("erase range is empty or not on physical sector boundaries")
            }
            SimError::PowerLost => f.write_str("power lost (simulated power cut)"),
            SimError::Failed => f.write_str("program or erase failed (injected fault)"),
        }
    }
}

impl std::error::Error for SimError {}

/// How a scheduled power cut affects the operation it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutKind {
    /// Power is lost before the operation starts: nothing changes.
    Before,
    /// Power is lost in the middle of the operation, in the classic shape
    /// [`Tear::CLASSIC`]: a write programs the first half of its words exactly
    /// and corrupts the next one (`new & pattern`); an erase erases the first
    /// half of its first sector.
    Torn,
    /// Power is lost in the middle of the operation, leaving the shape `Tear`
    /// describes. [`Tear::VARIANTS`] lists a set worth iterating.
    TornWith(Tear),
    /// Power is lost right after the operation completed.
    After,
}

impl CutKind {
    /// Every kind a power-loss test should try at each operation: `Before`,
    /// `After`, and a torn cut of each shape in [`Tear::VARIANTS`].
    pub fn all() -> impl Iterator<Item = CutKind> {
        [CutKind::Before, CutKind::After]
            .into_iter()
            .chain(Tear::VARIANTS.iter().map(|&t| CutKind::TornWith(t)))
    }
}

/// Where a torn write of `n` words stops: how many of its words are programmed
/// exactly before the one being programmed when power failed (the *torn word*,
/// see [`TornWord`]). The words after it keep their old contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TearPoint {
    /// No exact word: the first word is torn.
    Start,
    /// One exact word (none for a one-word write).
    OneWord,
    /// ⌊n/2⌋ exact words (the classic cut).
    Half,
    /// n − 1 exact words: only the last word is torn.
    LastWord,
}

impl TearPoint {
    /// Exact words for a write of `words` words (always less than `words`
    /// when `words > 0`).
    pub fn exact_words(self, words: usize) -> usize {
        let last = words.saturating_sub(1);
        match self {
            TearPoint::Start => 0,
            TearPoint::OneWord => 1.min(last),
            TearPoint::Half => (words / 2).min(last),
            TearPoint::LastWord => last,
        }
    }
}

/// What the torn word reads after the cut. `p` is [`torn_pattern`] of the
/// operation index, `old` what the word held, `new` what was being written.
///
/// On a `MULTIWRITE` flash every variant obeys the `MultiwriteNorFlash` power-loss
/// contract (bits written as 1 stay as they were, bits that were 0 stay 0): `And`
/// and `Partial` both give `old & (new | p)`, `Unchanged` gives `old`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornWord {
    /// `new & p`: any value, including bits read 0 that should be 1 (`NorFlash`
    /// leaves a torn word undefined). For an all-zero word this is all zero,
    /// the same as a complete write.
    And,
    /// `old & (new | p)`: only some of the bits that should clear are cleared,
    /// so a word written as all zero (a marker) still reads partly `FF`.
    Partial,
    /// `old`: the torn word was not programmed at all (on an erased word: still
    /// reads `FF`).
    Unchanged,
}

/// How much of its range a torn erase erased. The rest keeps its old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornErase {
    /// The first half of the first sector reads `FF` (the classic cut).
    Half,
    /// Only the first `WRITE_SIZE` bytes of the first sector read `FF`.
    FirstWord,
    /// Everything but the last `WRITE_SIZE` bytes of the last sector reads
    /// `FF`: the range looks erased unless one reads its very end.
    AllButLastWord,
    /// Every byte of the first sector has some bits erased: `old | p`, with `p`
    /// the [`torn_pattern`] of the operation index repeated over the sector.
    Bits,
}

/// The shape a [`CutKind::TornWith`] cut leaves: where a write stops and what
/// its torn word reads, and how much an erase erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tear {
    /// Where a torn write stops.
    pub point: TearPoint,
    /// What the torn word of a write reads.
    pub word: TornWord,
    /// How much a torn erase erased.
    pub erase: TornErase,
}

impl Tear {
    /// The shape of [`CutKind::Torn`].
    pub const CLASSIC: Tear = Tear {
        point: TearPoint::Half,
        word: TornWord::And,
        erase: TornErase::Half,
    };

    /// A set of shapes that together use every [`TearPoint`], [`TornWord`] and
    /// [`TornErase`] at least once. A one-word write (a marker) sees each
    /// `TornWord`: `And` (reads as written), `Partial` (partly `FF`) and
    /// `Unchanged` (still erased).
    pub const VARIANTS: [Tear; 5] = [
        Tear::CLASSIC,
        Tear {
            point: TearPoint::Start,
            word: TornWord::Partial,
            erase: TornErase::FirstWord,
        },
        Tear {
            point: TearPoint::OneWord,
            word: TornWord::Unchanged,
            erase: TornErase::Bits,
        },
        Tear {
            point: TearPoint::LastWord,
            word: TornWord::Partial,
            erase: TornErase::AllButLastWord,
        },
        Tear {
            point: TearPoint::LastWord,
            word: TornWord::Unchanged,
            erase: TornErase::Half,
        },
    ];
}

/// A power cut to inject at a given mutating operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// 0-based index of the mutating operation (write or erase) to cut, as
    /// counted by [`Stats::ops`] since the flash was created.
    pub at: u64,
    /// What the cut leaves behind.
    pub kind: CutKind,
}

/// What a faulty (or power-cut) mutating operation leaves in the flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing changes.
    Nothing,
    /// The operation completes exactly.
    Complete,
    /// What a [`CutKind::TornWith`] cut of this shape leaves: a write programs
    /// some words and tears one, an erase erases part of its range.
    Torn(Tear),
}

/// How an injected [`Fault`] shows itself to the caller. The power stays on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The operation returns [`SimError::Failed`] (the part reported a program
    /// or erase error) after leaving the effect: `Error(Effect::Nothing)` is a
    /// refused operation, `Error(Effect::Torn(_))` a partly done one,
    /// `Error(Effect::Complete)` a false alarm.
    Error(Effect),
    /// The operation returns `Ok(())` but leaves the effect instead of its
    /// full result: a write whose bits did not all program (weak cells), an
    /// erase that did not erase everything. Only reading back shows it.
    /// `Silent(Effect::Complete)` is no fault at all.
    Silent(Effect),
}

/// A fault other than a power cut, to inject at a given mutating operation
/// with [`SimFlash::inject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// 0-based index of the mutating operation (write or erase) it hits, as
    /// counted by [`Stats::ops`]; the same numbering as [`Cut::at`].
    pub at: u64,
    /// How it shows.
    pub kind: FaultKind,
}

/// Operation counters of a [`SimFlash`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Mutating operations (accepted write and erase calls, including the one
    /// a cut interrupted) since creation. Never reset.
    pub ops: u64,
    /// Write calls that (at least partly) programmed the flash.
    pub writes: u64,
    /// Sectors erased (fully, or partly by a torn erase: each sector it
    /// touched).
    pub erases: u64,
    /// Successful read calls.
    pub reads: u64,
    /// Bytes programmed (a torn write counts the words it touched).
    pub bytes_written: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes erased (a torn erase counts the bytes it erased, or for
    /// [`TornErase::Bits`] the whole sector whose bits it partly erased).
    pub bytes_erased: u64,
}

/// A strict simulated NOR flash.
///
/// * `WRITE_SIZE`: program granularity in bytes (the "word").
/// * `ERASE_SIZE`: the smallest sector size; every physical sector is a
///   multiple of it.
/// * `MULTIWRITE`: whether a word may be programmed again (clearing more bits)
///   without an erase; if `true` the type implements [`MultiwriteNorFlash`].
///
/// See the [crate docs](crate) for the rules.
///
/// Only `MULTIWRITE = true` flashes implement [`MultiwriteNorFlash`]:
///
/// ```compile_fail
/// fn needs_multiwrite<T: embedded_storage::nor_flash::MultiwriteNorFlash>() {}
/// needs_multiwrite::<ota_flash_sim::F2Flash>();
/// ```
///
/// ```
/// fn needs_multiwrite<T: embedded_storage::nor_flash::MultiwriteNorFlash>() {}
/// needs_multiwrite::<ota_flash_sim::SimFlash<4, 4096, true>>();
/// ```
#[derive(Clone)]
pub struct SimFlash<const WRITE_SIZE: usize, const ERASE_SIZE: usize, const MULTIWRITE: bool> {
    data: Vec<u8>,
    sectors: Vec<Range<u32>>,
    wear: Vec<u64>,
    stats: Stats,
    cut: Option<Cut>,
    /// Injected faults not fired yet, in no particular order.
    faults: Vec<Fault>,
    powered_off: bool,
}

impl<const W: usize, const E: usize, const M: bool> fmt::Debug for SimFlash<W, E, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFlash")
            .field("write_size", &W)
            .field("erase_size", &E)
            .field("multiwrite", &M)
            .field("capacity", &self.data.len())
            .field("sectors", &self.sectors.len())
            .field("stats", &self.stats)
            .field("cut", &self.cut)
            .field("faults", &self.faults)
            .field("powered_off", &self.powered_off)
            .finish()
    }
}

/// Which (validated) mutating operation is being applied.
enum Op<'a> {
    Write { offset: usize, bytes: &'a [u8] },
    Erase { sectors: Range<usize> },
}

impl<const W: usize, const E: usize, const M: bool> SimFlash<W, E, M> {
    /// Compile-time sanity check of the geometry parameters.
    const GEOMETRY_OK: () = assert!(
        W > 0 && E > 0 && E.is_multiple_of(W),
        "SimFlash: WRITE_SIZE and ERASE_SIZE must be non-zero and ERASE_SIZE a multiple of WRITE_SIZE"
    );

    /// Creates a fully erased (`0xFF`) flash.
    ///
    /// `sectors` lists the physical sector sizes in address order, starting at
    /// address 0. Sizes may differ (e.g. `&[16384, 16384, 16384, 16384, 65536,
    /// 131072]`), but each must be a non-zero multiple of `ERASE_SIZE`.
    ///
    /// # Panics
    ///
    /// If the map is empty, a size is zero or not a multiple of `ERASE_SIZE`,
    /// or the total exceeds the 32-bit address space (`u32::MAX` bytes).
    pub fn new(sectors: &[usize]) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::GEOMETRY_OK;
        assert!(!sectors.is_empty(), "SimFlash: empty sector map");
        let mut ranges = Vec::with_capacity(sectors.len());
        let mut start: u64 = 0;
        for (i, &size) in sectors.iter().enumerate() {
            assert!(
                size != 0 && size.is_multiple_of(E),
                "SimFlash: sector {i} has size {size}, not a non-zero multiple of ERASE_SIZE ({E})"
            );
            let end = start + size as u64;
            assert!(
                end <= u64::from(u32::MAX),
                "SimFlash: sector map exceeds the 32-bit address space"
            );
            ranges.push(start as u32..end as u32);
            start = end;
        }
        SimFlash {
            data: vec![0xFF; start as usize],
            wear: vec![0; ranges.len()],
            sectors: ranges,
            stats: Stats::default(),
            cut: None,
            faults: Vec::new(),
            powered_off: false,
        }
    }

    /// Total size in bytes.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Physical sector address ranges, in address order.
    pub fn sectors(&self) -> &[Range<u32>] {
        &self.sectors
    }

    /// Raw view of the whole flash (bypasses every rule, counts nothing,
    /// works while powered off).
    pub fn contents(&self) -> &[u8] {
        &self.data
    }

    /// Raw copy of `data` to `addr` ("factory programming"): bypasses every
    /// rule (alignment, erased state, power) and counts nothing.
    ///
    /// # Panics
    ///
    /// If the range is out of bounds.
    pub fn preload(&mut self, addr: u32, data: &[u8]) {
        let start = addr as usize;
        let end = start
            .checked_add(data.len())
            .filter(|&end| end <= self.data.len())
            .unwrap_or_else(|| {
                panic!(
                    "SimFlash::preload: {addr:#x}+{} out of bounds (capacity {})",
                    data.len(),
                    self.data.len()
                )
            });
        self.data[start..end].copy_from_slice(data);
    }

    /// Schedules a power cut at mutating operation index `cut.at` (replacing
    /// any previously scheduled one). A cut whose index has already passed
    /// never fires.
    pub fn schedule_cut(&mut self, cut: Cut) {
        self.cut = Some(cut);
    }

    /// Removes the scheduled cut, if any (does not power the flash back on).
    pub fn clear_cut(&mut self) {
        self.cut = None;
    }

    /// The cut currently scheduled and not yet fired, if any.
    pub fn scheduled_cut(&self) -> Option<Cut> {
        self.cut
    }

    /// Injects a fault other than a power cut at mutating operation `fault.at`
    /// (replacing a fault already injected at that index). Any number of faults
    /// may wait at different indices; each fires once. A fault whose index has
    /// already passed never fires. If a scheduled [`Cut`] hits the same
    /// operation, the cut wins and the fault is dropped.
    ///
    /// A fault needs no power cycle: the flash stays powered, and the call
    /// returns [`SimError::Failed`] ([`FaultKind::Error`]) or `Ok(())`
    /// ([`FaultKind::Silent`]). It is counted like any operation: in
    /// [`Stats::ops`] always, in the write or erase counters when its
    /// [`Effect`] changed something.
    ///
    /// ```
    /// use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
    /// use ota_flash_sim::{Effect, Fault, FaultKind, SimError, SimFlash, Tear};
    ///
    /// let mut flash = SimFlash::<4, 1024, false>::new(&[1024, 1024]);
    /// // Op 0: a write the part refuses. Op 1: a write that "succeeds" but
    /// // leaves its last word unprogrammed.
    /// flash.inject(Fault { at: 0, kind: FaultKind::Error(Effect::Nothing) });
    /// flash.inject(Fault { at: 1, kind: FaultKind::Silent(Effect::Torn(Tear::VARIANTS[4])) });
    /// let data = [1, 2, 3, 4, 5, 6, 7, 8];
    /// assert_eq!(flash.write(0, &data), Err(SimError::Failed));
    /// assert_eq!(flash.contents()[..8], [0xFF; 8]);
    /// assert_eq!(flash.write(0, &data), Ok(()));
    /// let mut back = [0u8; 8];
    /// flash.read(0, &mut back).unwrap();
    /// assert_eq!(back, [1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF]); // only a read-back tells
    /// assert!(!flash.is_powered_off());
    /// ```
    pub fn inject(&mut self, fault: Fault) {
        self.faults.retain(|f| f.at != fault.at);
        self.faults.push(fault);
    }

    /// Removes every injected fault that has not fired.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// The injected faults that have not fired yet, in no particular order.
    pub fn pending_faults(&self) -> &[Fault] {
        &self.faults
    }

    /// `true` once a scheduled cut fired; every read, write and erase then
    /// returns [`SimError::PowerLost`] until [`power_on`](Self::power_on).
    pub fn is_powered_off(&self) -> bool {
        self.powered_off
    }

    /// Power returns. Contents stay as the cut left them.
    pub fn power_on(&mut self) {
        self.powered_off = false;
    }

    /// Operation counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Zeroes every counter (including per-sector wear) except [`Stats::ops`],
    /// so cut indices stay valid.
    pub fn reset_stats(&mut self) {
        self.stats = Stats {
            ops: self.stats.ops,
            ..Stats::default()
        };
        self.wear.iter_mut().for_each(|w| *w = 0);
    }

    /// How many times physical sector `sector_index` was erased (a torn erase
    /// counts).
    ///
    /// # Panics
    ///
    /// If `sector_index >= self.sectors().len()`.
    pub fn erase_count(&self, sector_index: usize) -> u64 {
        self.wear[sector_index]
    }

    /// `start..end` if `offset + len` lies inside the flash.
    fn bounds(&self, offset: u32, len: usize) -> Result<Range<usize>, SimError> {
        let start = offset as usize;
        match start.checked_add(len) {
            Some(end) if end <= self.data.len() => Ok(start..end),
            _ => Err(SimError::OutOfBounds),
        }
    }

    /// Index of the sector starting exactly at `addr`, if any.
    fn sector_starting_at(&self, addr: usize) -> Option<usize> {
        self.sectors
            .binary_search_by_key(&addr, |r| r.start as usize)
            .ok()
    }

    /// Validates a write: alignment, bounds, program rules.
    fn check_write(&self, offset: u32, bytes: &[u8]) -> Result<usize, SimError> {
        let range = self.bounds(offset, bytes.len())?;
        if !range.start.is_multiple_of(W) || !bytes.len().is_multiple_of(W) {
            return Err(SimError::NotAligned);
        }
        let old = &self.data[range.clone()];
        for (i, (old_word, new_word)) in old.chunks_exact(W).zip(bytes.chunks_exact(W)).enumerate()
        {
            let ok = if M {
                old_word.iter().zip(new_word).all(|(&o, &n)| o & n == n)
            } else {
                old_word.iter().all(|&b| b == 0xFF)
            };
            if !ok {
                return Err(SimError::NotErased {
                    addr: (range.start + i * W) as u32,
                });
            }
        }
        Ok(range.start)
    }

    /// Validates an erase; returns the covered sector indices.
    fn check_erase(&self, from: u32, to: u32) -> Result<Range<usize>, SimError> {
        let (from_u, to_u) = (from as usize, to as usize);
        if from_u > self.data.len() || to_u > self.data.len() {
            return Err(SimError::OutOfBounds);
        }
        if !from_u.is_multiple_of(E) || !to_u.is_multiple_of(E) {
            return Err(SimError::NotAligned);
        }
        if from_u >= to_u {
            return Err(SimError::BadEraseRange);
        }
        let first = self
            .sector_starting_at(from_u)
            .ok_or(SimError::BadEraseRange)?;
        let last = if to_u == self.data.len() {
            self.sectors.len()
        } else {
            self.sector_starting_at(to_u)
                .ok_or(SimError::BadEraseRange)?
        };
        Ok(first..last)
    }

    /// Programs `bytes` at `offset` (already validated).
    fn program(&mut self, offset: usize, bytes: &[u8]) {
        for (cell, &new) in self.data[offset..offset + bytes.len()]
            .iter_mut()
            .zip(bytes)
        {
            // For single-write flash the cell is 0xFF, so this is just `new`.
            *cell &= new;
        }
    }

    /// Erases sectors `sectors` fully (already validated).
    fn erase_sectors(&mut self, sectors: Range<usize>) {
        for s in sectors {
            let r = self.sectors[s].clone();
            self.data[r.start as usize..r.end as usize].fill(0xFF);
            self.wear[s] += 1;
            self.stats.erases += 1;
            self.stats.bytes_erased += u64::from(r.end - r.start);
        }
    }

    /// Applies a validated mutating operation, honouring a scheduled cut or an
    /// injected fault.
    fn mutate(&mut self, op: Op<'_>) -> Result<(), SimError> {
        let index = self.stats.ops;
        self.stats.ops += 1;
        let fault = self
            .faults
            .iter()
            .position(|f| f.at == index)
            .map(|i| self.faults.swap_remove(i).kind);
        let cut = match self.cut {
            Some(cut) if cut.at == index => {
                self.cut = None;
                self.powered_off = true;
                Some(cut.kind)
            }
            _ => None,
        };
        let (effect, result) = match (cut, fault) {
            (Some(kind), _) => {
                let effect = match kind {
                    CutKind::Before => Effect::Nothing,
                    CutKind::After => Effect::Complete,
                    CutKind::Torn => Effect::Torn(Tear::CLASSIC),
                    CutKind::TornWith(t) => Effect::Torn(t),
                };
                (effect, Err(SimError::PowerLost))
            }
            (None, Some(FaultKind::Error(e))) => (e, Err(SimError::Failed)),
            (None, Some(FaultKind::Silent(e))) => (e, Ok(())),
            (None, None) => (Effect::Complete, Ok(())),
        };
        match (op, effect) {
            (_, Effect::Nothing) => {}
            (Op::Write { offset, bytes }, Effect::Complete) => {
                self.program(offset, bytes);
                self.stats.writes += 1;
                self.stats.bytes_written += bytes.len() as u64;
            }
            (Op::Erase { sectors }, Effect::Complete) => {
                self.erase_sectors(sectors);
            }
            (Op::Write { offset, bytes }, Effect::Torn(t)) => {
                self.torn_write(index, offset, bytes, t);
            }
            (Op::Erase { sectors }, Effect::Torn(t)) => {
                self.torn_erase(index, sectors, t.erase);
            }
        }
        result
    }

    /// Torn write: `tear.point` decides how many words are exact, `tear.word`
    /// what the next one reads; the rest of the range is unchanged.
    fn torn_write(&mut self, index: u64, offset: usize, bytes: &[u8], tear: Tear) {
        let words = bytes.len() / W;
        let exact = tear.point.exact_words(words) * W;
        self.program(offset, &bytes[..exact]);
        let mut touched = exact;
        if words > 0 {
            let pattern = torn_pattern(index, W);
            let new = &bytes[exact..exact + W];
            let cells = &mut self.data[offset + exact..offset + exact + W];
            for ((cell, &n), &p) in cells.iter_mut().zip(new).zip(&pattern) {
                *cell = match (tear.word, M) {
                    (TornWord::Unchanged, _) => *cell,
                    // Only some of the bits that should clear (old 1, new 0) are
                    // cleared; 1→1 bits stay 1 and 0 bits stay 0, as the
                    // `MultiwriteNorFlash` contract guarantees.
                    (TornWord::Partial, _) | (TornWord::And, true) => *cell & (n | p),
                    // Word was erased; its content after a torn program is
                    // undefined per `NorFlash`.
                    (TornWord::And, false) => n & p,
                };
            }
            touched += W;
        }
        self.stats.writes += 1;
        self.stats.bytes_written += touched as u64;
    }

    /// Torn erase of `sectors` in the shape `how`.
    fn torn_erase(&mut self, index: u64, sectors: Range<usize>, how: TornErase) {
        let first = self.sectors[sectors.start].clone();
        let (first_start, first_len) = (first.start as usize, (first.end - first.start) as usize);
        let (range, touched) = match how {
            TornErase::Half => {
                let r = first_start..first_start + first_len / 2;
                self.data[r.clone()].fill(0xFF);
                (r, sectors.start..sectors.start + 1)
            }
            TornErase::FirstWord => {
                let r = first_start..first_start + W;
                self.data[r.clone()].fill(0xFF);
                (r, sectors.start..sectors.start + 1)
            }
            TornErase::AllButLastWord => {
                let end = self.sectors[sectors.end - 1].end as usize;
                let r = first_start..end - W;
                self.data[r.clone()].fill(0xFF);
                (r, sectors.clone())
            }
            TornErase::Bits => {
                let r = first_start..first_start + first_len;
                let p = torn_pattern(index, 8);
                for (i, cell) in self.data[r.clone()].iter_mut().enumerate() {
                    *cell |= p[i % 8];
                }
                (r, sectors.start..sectors.start + 1)
            }
        };
        for s in touched {
            self.wear[s] += 1;
            self.stats.erases += 1;
        }
        self.stats.bytes_erased += range.len() as u64;
    }
}

/// The deterministic corruption pattern used by a [`CutKind::Torn`] write cut
/// at mutating operation `index` ([`Cut::at`]); `len` bytes (the torn word
/// uses the first `WRITE_SIZE`).
///
/// The torn word becomes `new & pattern` on single-write flash and
/// `old & (new | pattern)` on multiwrite flash. Exposed so tests can predict
/// the exact corrupted value.
///
/// It is xorshift64 seeded from the op index (through splitmix64 so that
/// index 0 does not give the all-zero fixed point), little-endian bytes.
pub fn torn_pattern(index: u64, len: usize) -> Vec<u8> {
    let mut z = index.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let mut state = if z == 0 { 0x2545_F491_4F6C_DD1D } else { z };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    out
}

impl<const W: usize, const E: usize, const M: bool> ErrorType for SimFlash<W, E, M> {
    type Error = SimError;
}

impl<const W: usize, const E: usize, const M: bool> ReadNorFlash for SimFlash<W, E, M> {
    const READ_SIZE: usize = 1;

    /// Reads `bytes.len()` bytes at `offset`. Errors: [`SimError::OutOfBounds`],
    /// [`SimError::PowerLost`]. Not a mutating operation (does not count in
    /// [`Stats::ops`]).
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        let range = self.bounds(offset, bytes.len())?;
        if self.powered_off {
            return Err(SimError::PowerLost);
        }
        bytes.copy_from_slice(&self.data[range]);
        self.stats.reads += 1;
        self.stats.bytes_read += bytes.len() as u64;
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.data.len()
    }
}

impl<const W: usize, const E: usize, const M: bool> NorFlash for SimFlash<W, E, M> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    /// Erases the physical sectors exactly covering `from..to`.
    ///
    /// Errors (checked in this order, nothing changes and nothing is counted):
    /// [`SimError::OutOfBounds`], [`SimError::NotAligned`] (not multiples of
    /// `ERASE_SIZE`), [`SimError::BadEraseRange`] (`from >= to` or not on
    /// physical sector boundaries), [`SimError::PowerLost`] (already off).
    /// A scheduled cut at this op returns [`SimError::PowerLost`]; an injected
    /// [`Fault`] returns [`SimError::Failed`] or `Ok(())` as its kind says.
    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        let sectors = self.check_erase(from, to)?;
        if self.powered_off {
            return Err(SimError::PowerLost);
        }
        self.mutate(Op::Erase { sectors })
    }

    /// Programs `bytes` at `offset`.
    ///
    /// Errors (checked in this order, nothing changes and nothing is counted):
    /// [`SimError::OutOfBounds`], [`SimError::NotAligned`],
    /// [`SimError::NotErased`], [`SimError::PowerLost`] (already off).
    /// A scheduled cut at this op returns [`SimError::PowerLost`]; an injected
    /// [`Fault`] returns [`SimError::Failed`] or `Ok(())` as its kind says.
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        let offset = self.check_write(offset, bytes)?;
        if self.powered_off {
            return Err(SimError::PowerLost);
        }
        self.mutate(Op::Write { offset, bytes })
    }
}

impl<const W: usize, const E: usize> MultiwriteNorFlash for SimFlash<W, E, true> {}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_index_dependent() {
        assert_eq!(torn_pattern(5, 16), torn_pattern(5, 16));
        assert_ne!(torn_pattern(5, 16), torn_pattern(6, 16));
        assert_ne!(torn_pattern(0, 8), vec![0u8; 8]);
        assert_eq!(torn_pattern(3, 3).len(), 3);
        // Prefix property: a longer pattern starts with the shorter one.
        assert_eq!(&torn_pattern(9, 12)[..4], &torn_pattern(9, 4)[..]);
        // Pinned values (computed independently): power-loss test results must
        // not change between versions of this crate.
        assert_eq!(
            torn_pattern(0, 8),
            [0xf4, 0x7d, 0xc5, 0x8c, 0x0e, 0x26, 0x61, 0x66]
        );
        assert_eq!(torn_pattern(7, 4), [0x0c, 0xfc, 0xa1, 0x64]);
    }

    #[test]
    fn sector_map_is_built_in_order() {
        let f = SimFlash::<4, 1024, false>::new(&[1024, 2048, 1024]);
        assert_eq!(f.sectors(), &[0..1024, 1024..3072, 3072..4096]);
        assert_eq!(f.capacity(), 4096);
        assert!(f.contents().iter().all(|&b| b == 0xFF));
    }

    #[test]
    #[should_panic(expected = "not a non-zero multiple")]
    fn bad_sector_size_panics() {
        let _ = SimFlash::<4, 1024, false>::new(&[1024, 1536]);
    }

    #[test]
    #[should_panic(expected = "empty sector map")]
    fn empty_map_panics() {
        let _ = SimFlash::<4, 1024, false>::new(&[]);
    }

    #[test]
    fn error_kinds() {
        assert_eq!(SimError::NotAligned.kind(), NorFlashErrorKind::NotAligned);
        assert_eq!(SimError::OutOfBounds.kind(), NorFlashErrorKind::OutOfBounds);
        assert_eq!(SimError::PowerLost.kind(), NorFlashErrorKind::Other);
        assert_eq!(SimError::BadEraseRange.kind(), NorFlashErrorKind::Other);
        assert_eq!(SimError::Failed.kind(), NorFlashErrorKind::Other);
        assert_eq!(
            SimError::NotErased { addr: 4 }.kind(),
            NorFlashErrorKind::Other
        );
        assert!(SimError::NotErased { addr: 16 }
            .to_string()
            .contains("0x00000010"));
    }

    #[test]
    fn f2_shape() {
        let f = F2Flash::new(&[16384, 16384, 16384, 16384, 65536, 131072]);
        assert_eq!(f.capacity(), 256 * 1024);
        assert_eq!(<F2Flash as NorFlash>::WRITE_SIZE, 4);
        assert_eq!(<F2Flash as NorFlash>::ERASE_SIZE, 16384);
        assert_eq!(<F2Flash as ReadNorFlash>::READ_SIZE, 1);
    }
}
