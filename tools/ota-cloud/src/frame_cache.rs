//! The server's cache of each device's replay record ([`LastFrame`]), bounded.
//!
//! Only an optimisation: the server uses a cached record as `admit`'s input and as
//! [`FrameCommit::expected`](crate::store::FrameCommit::expected), and the store's
//! compare-and-set ([`Store::commit_frame`](crate::store::Store::commit_frame)) refuses the
//! commit when the stored record differs (another instance, or the store changed under a
//! restart). The server then drops the entry, reads the record from the store and re-admits. A
//! refusal decided on a cached record is confirmed the same way before it is final, so the
//! cache never decides anything alone.
//!
//! Bound: two generations of at most `capacity / 2` entries each (a new entry goes into the
//! young one; when it is full it becomes the old one and the previous old one is dropped; a hit
//! in the old one moves the entry back to the young one): at most `capacity` devices, the most
//! recently used kept, O(1) per operation. Memory: [`BYTES_PER_DEVICE`] (65 on 64-bit
//! targets) per cached device, and up to as much again in the hash tables' free slots (a
//! table grows by doubling): 8.5 to 17 MB for the default [`DEFAULT_CAPACITY`] of 131,072
//! devices.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use cloud_proto::{DeviceId, LastFrame};

/// Devices whose records the server keeps by default (see the module docs for memory).
pub const DEFAULT_CAPACITY: usize = 1 << 17;

/// Bytes of one cached device: its key, its record (`None` before its first frame) and the
/// hash table's control byte.
pub const BYTES_PER_DEVICE: usize = std::mem::size_of::<(DeviceId, Option<LastFrame>)>() + 1;

// What the module docs promise for the memory figure.
const _: () = assert!(BYTES_PER_DEVICE <= 65);

/// A bounded map from device to the record the store held when this server last read or
/// committed it.
#[derive(Debug)]
pub(crate) struct FrameCache {
    half: usize,
    gens: Mutex<Gens>,
}

#[derive(Debug, Default)]
struct Gens {
    young: HashMap<DeviceId, Option<LastFrame>>,
    old: HashMap<DeviceId, Option<LastFrame>>,
}

impl Gens {
    fn insert(&mut self, half: usize, d: DeviceId, v: Option<LastFrame>) {
        self.old.remove(&d);
        self.young.insert(d, v);
        if self.young.len() >= half {
            self.old = std::mem::take(&mut self.young);
        }
    }
}

impl FrameCache {
    /// A cache of at most `capacity` devices; 0 (or 1) disables it: every lookup misses.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            half: capacity / 2,
            gens: Mutex::new(Gens::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Gens> {
        // A panic while holding it left plain maps: still usable.
        self.gens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached record: `None` on a miss, `Some(None)` for a device known to have no record.
    pub(crate) fn get(&self, d: DeviceId) -> Option<Option<LastFrame>> {
        if self.half == 0 {
            return None;
        }
        let mut g = self.lock();
        if let Some(v) = g.young.get(&d) {
            return Some(*v);
        }
        let v = g.old.remove(&d)?;
        g.insert(self.half, d, v);
        Some(v)
    }

    /// Remembers `v`, just read from the store.
    pub(crate) fn read(&self, d: DeviceId, v: Option<LastFrame>) {
        if self.half == 0 {
            return;
        }
        self.lock().insert(self.half, d, v);
    }

    /// Remembers `record`, just committed over `expected`. If the entry changed meanwhile
    /// (a concurrent frame of the same device on this server), which commit came last is
    /// unknown: the entry is dropped and the next frame reads the store.
    pub(crate) fn committed(&self, d: DeviceId, expected: Option<LastFrame>, record: LastFrame) {
        if self.half == 0 {
            return;
        }
        let mut g = self.lock();
        let current = g.young.get(&d).or_else(|| g.old.get(&d)).copied();
        match current {
            Some(c) if c != expected => {
                g.young.remove(&d);
                g.old.remove(&d);
            }
            _ => g.insert(self.half, d, Some(record)),
        }
    }

    /// Forgets the device (its record is unknown: a commit was refused or failed).
    pub(crate) fn forget(&self, d: DeviceId) {
        if self.half == 0 {
            return;
        }
        let mut g = self.lock();
        g.young.remove(&d);
        g.old.remove(&d);
    }

    /// Devices cached now.
    #[cfg(test)]
    fn len(&self) -> usize {
        let g = self.lock();
        g.young.len() + g.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(counter: u32) -> LastFrame {
        LastFrame {
            counter,
            tag: [counter as u8; cloud_proto::TAG_LEN],
            accepted_at_ms: 1,
            source: "127.0.0.1:1".parse().unwrap(),
            answers: 1,
        }
    }

    #[test]
    fn bounded_and_keeps_the_recently_used() {
        let c = FrameCache::new(8);
        for i in 0..100 {
            c.read(DeviceId(i), Some(rec(i)));
            // Device 0 is used all along: it stays.
            assert_eq!(c.get(DeviceId(0)), Some(Some(rec(0))));
            assert!(c.len() <= 8, "{} cached", c.len());
        }
        assert_eq!(c.get(DeviceId(1)), None, "least recently used: evicted");
        assert_eq!(c.get(DeviceId(99)), Some(Some(rec(99))));
    }

    #[test]
    fn commit_over_a_changed_entry_forgets_it() {
        let c = FrameCache::new(8);
        let d = DeviceId(1);
        c.read(d, None);
        c.committed(d, None, rec(1));
        assert_eq!(c.get(d), Some(Some(rec(1))));
        // A concurrent frame committed rec(2) over rec(1) first; this one's commit (over None)
        // finishing later must not put its older view back.
        c.committed(d, Some(rec(1)), rec(2));
        c.committed(d, None, rec(1));
        assert_eq!(c.get(d), None);
        // Evicted meanwhile: the committed record is simply remembered.
        c.committed(d, Some(rec(2)), rec(3));
        assert_eq!(c.get(d), Some(Some(rec(3))));
        c.forget(d);
        assert_eq!(c.get(d), None);
    }

    #[test]
    fn zero_capacity_never_hits() {
        let c = FrameCache::new(0);
        c.read(DeviceId(1), None);
        c.committed(DeviceId(1), None, rec(1));
        assert_eq!(c.get(DeviceId(1)), None);
        assert_eq!(c.len(), 0);
    }
}
