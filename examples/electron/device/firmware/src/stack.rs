//! The stack's high-water mark: cortex-m-rt's `paint-stack` fills `_stack_end.._stack_start`
//! with [`cortex_m_rt::STACK_PAINT_VALUE`] at reset; the deepest word no longer holding it
//! marks the peak.

extern "C" {
    static _stack_end: u32;
    static _stack_start: u32;
}

/// Bytes of stack used at the deepest point since reset (a word the program happened to
/// write with the paint value would hide one word: an error of 4 bytes at most per such word).
///
/// Cost: a scan of the unused stack (at most the RAM between `.bss` and the stack top).
pub fn peak_bytes() -> usize {
    // Linker symbols from cortex-m-rt's link.x: only their addresses are taken.
    let (end, start) = (
        core::ptr::addr_of!(_stack_end) as usize,
        core::ptr::addr_of!(_stack_start) as usize,
    );
    let mut at = end;
    while at < start {
        // SAFETY: `end..start` is RAM reserved for the stack (4-byte aligned, link.x asserts
        // it); reading words below the live stack pointer is reading plain memory.
        let w = unsafe { core::ptr::read_volatile(at as *const u32) };
        if w != cortex_m_rt::STACK_PAINT_VALUE {
            break;
        }
        at += 4;
    }
    start - at
}
