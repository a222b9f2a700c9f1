//! Small flash routines shared by the updater and the bootloader.

use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use sha2::{Digest as _, Sha256};

use crate::layout::{Region, SectorMap};
use crate::manifest::Sha256Digest;

type R<T> = Result<T, NorFlashErrorKind>;

/// Erases every physical sector that overlaps `start..start + len`, one `erase` call each.
pub(crate) fn erase_covering<F: NorFlash>(
    flash: &mut F,
    map: &SectorMap,
    start: u32,
    len: u32,
) -> R<()> {
    for s in map.sectors(Region::new(start, start + len)) {
        flash.erase(s.start, s.end).map_err(|e| e.kind())?;
    }
    Ok(())
}

/// Reads `len` bytes at `addr` piecewise into `buf` and hands each piece to `f`.
fn for_each_piece<F: ReadNorFlash>(
    flash: &mut F,
    addr: u32,
    len: u32,
    buf: &mut [u8],
    mut f: impl FnMut(u32, &[u8]) -> R<bool>,
) -> R<bool> {
    let mut done = 0u32;
    while done < len {
        let n = (len - done).min(buf.len() as u32);
        let piece = &mut buf[..n as usize];
        flash.read(addr + done, piece).map_err(|e| e.kind())?;
        if !f(done, piece)? {
            return Ok(false);
        }
        done += n;
    }
    Ok(true)
}

/// True if `len` bytes at `addr` all read 0xFF. Reads 64 bytes at a time.
pub(crate) fn is_erased<F: ReadNorFlash>(flash: &mut F, addr: u32, len: u32) -> R<bool> {
    let mut buf = [0u8; 64];
    for_each_piece(flash, addr, len, &mut buf, |_, p| {
        Ok(p.iter().all(|&b| b == 0xFF))
    })
}

/// SHA-256 of `len` bytes at `addr`, read through `buf`.
pub(crate) fn sha256<F: ReadNorFlash>(
    flash: &mut F,
    addr: u32,
    len: u32,
    buf: &mut [u8],
) -> R<Sha256Digest> {
    let mut h = Sha256::new();
    hash_into(flash, addr, len, buf, &mut h)?;
    Ok(Sha256Digest(h.finalize().into()))
}

/// Feeds `len` bytes at `addr`, read through `buf`, to `h` (a hash run over several steps).
pub(crate) fn hash_into<F: ReadNorFlash>(
    flash: &mut F,
    addr: u32,
    len: u32,
    buf: &mut [u8],
    h: &mut Sha256,
) -> R<()> {
    if buf.is_empty() && len > 0 {
        // Callers check this; never loop without progress.
        return Err(NorFlashErrorKind::Other);
    }
    for_each_piece(flash, addr, len, buf, |_, p| {
        h.update(p);
        Ok(true)
    })?;
    Ok(())
}

/// Writes `data` at the write-size-aligned `addr`, padding the last word with 0xFF.
/// At most two `write` calls. `F::WRITE_SIZE` must be at most 32 (checked by the layout).
pub(crate) fn write_padded<F: NorFlash>(flash: &mut F, addr: u32, data: &[u8]) -> R<()> {
    let w = F::WRITE_SIZE;
    let aligned = data.len() / w * w;
    if aligned > 0 {
        flash.write(addr, &data[..aligned]).map_err(|e| e.kind())?;
    }
    let tail = &data[aligned..];
    if !tail.is_empty() {
        let mut word = [0xFFu8; 32];
        word[..tail.len()].copy_from_slice(tail);
        flash
            .write(addr + aligned as u32, &word[..w])
            .map_err(|e| e.kind())?;
    }
    Ok(())
}

/// Copies `len` bytes (a multiple of the write size) from `from` to the erased `to`, through
/// `buf` (whose usable length is rounded down to the write size). Pieces that are all 0xFF are
/// not written: they already read so.
pub(crate) fn copy<F: NorFlash>(
    flash: &mut F,
    from: u32,
    to: u32,
    len: u32,
    buf: &mut [u8],
) -> R<()> {
    let usable = buf.len() / F::WRITE_SIZE * F::WRITE_SIZE;
    if usable == 0 && len > 0 {
        // Callers check this; never loop without progress.
        return Err(NorFlashErrorKind::NotAligned);
    }
    let buf = &mut buf[..usable];
    let mut done = 0u32;
    while done < len {
        let n = (len - done).min(usable as u32);
        let piece = &mut buf[..n as usize];
        flash.read(from + done, piece).map_err(|e| e.kind())?;
        if piece.iter().any(|&b| b != 0xFF) {
            flash.write(to + done, piece).map_err(|e| e.kind())?;
        }
        done += n;
    }
    Ok(())
}
