//! The board link: USART2 to the host bridge, which holds the SARA emulator's pins and clock.
//! Byte table in the module docs of [`super`].

use core::cell::RefCell;

use critical_section::Mutex;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorKind, ErrorType, InputPin, OutputPin};

use crate::pac;
use crate::time::Delay;
use crate::usart::{Usart2, UsartError};

/// The netduino2's system clock (QEMU's `SYSCLK`) is the board's after `clocks::init`.
use crate::clocks::SYSCLK_HZ;

const HELLO: u8 = 0xA0;
const WAITED: u8 = 0xA1;
const PWR_ON: u8 = 0xA2;
const RESET_N: u8 = 0xA3;
const V_INT: u8 = 0xA4;
const SLEEP: u8 = 0xA5;
/// An answer's first byte is its request's plus this.
const ANSWER: u8 = 0x30;

/// Polls of USART2 for one answer byte: several seconds of host time under QEMU (the bridge
/// may sleep real time while the emulator's sockets are open), a bound all the same.
const LINK_SPIN: u32 = 50_000_000;
/// Polls of USART3 for the first byte the bridge said it queued.
const RX_SPIN: u32 = 2_000_000;

/// Why a board-link exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LinkError {
    /// [`board_link`] was not called.
    NotOpen,
    /// USART2 failed.
    Usart(UsartError),
    /// No answer within the bound (no bridge on the other end).
    TimedOut,
    /// An answer that does not match the request.
    BadAnswer(u8),
}

impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotOpen => f.write_str("board link not open"),
            Self::Usart(e) => write!(f, "board link usart: {e}"),
            Self::TimedOut => f.write_str("no answer from the qemu bridge"),
            Self::BadAnswer(b) => write!(f, "unexpected answer {b:#04x} from the qemu bridge"),
        }
    }
}

impl core::error::Error for LinkError {}

impl embedded_hal::digital::Error for LinkError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// Board-link counters since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LinkStats {
    /// Exchanges answered.
    pub exchanges: u32,
    /// Exchanges that failed.
    pub failures: u32,
    /// Nanoseconds of waiting reported to the bridge.
    pub waited_ns: u64,
}

struct Link {
    usart: Usart2,
    stats: LinkStats,
}

static LINK: Mutex<RefCell<Option<Link>>> = Mutex::new(RefCell::new(None));

/// Opens the board link on USART2 (8N1; QEMU ignores the baud rate) and returns the modem's
/// pins as the bridge drives them. Call [`hello`] next to check that the bridge answers.
pub fn board_link(usart2: pac::USART2) -> (QemuPwrOn, QemuResetN, QemuVint) {
    let usart = Usart2::new(usart2, SYSCLK_HZ / 4, 115_200, false);
    critical_section::with(|cs| {
        *LINK.borrow_ref_mut(cs) = Some(Link {
            usart,
            stats: LinkStats::default(),
        });
    });
    (
        QemuPwrOn { _private: () },
        QemuResetN { _private: () },
        QemuVint { _private: () },
    )
}

/// Tells the bridge the firmware booted (a power-on or the sleep stand-in's reset).
///
/// # Errors
/// [`LinkError`]: no bridge answered.
pub fn hello() -> Result<(), LinkError> {
    exchange(&[HELLO], &mut [0])
}

/// The link's counters.
pub fn link_stats() -> LinkStats {
    critical_section::with(|cs| {
        LINK.borrow_ref(cs)
            .as_ref()
            .map(|l| l.stats)
            .unwrap_or_default()
    })
}

/// Sends `req`, reads `answer.len()` bytes (the first one checked against `req[0]`).
fn exchange(req: &[u8], answer: &mut [u8]) -> Result<(), LinkError> {
    critical_section::with(|cs| {
        let mut link = LINK.borrow_ref_mut(cs);
        let link = link.as_mut().ok_or(LinkError::NotOpen)?;
        let r = exchange_on(&mut link.usart, req, answer);
        match r {
            Ok(()) => link.stats.exchanges = link.stats.exchanges.wrapping_add(1),
            Err(_) => link.stats.failures = link.stats.failures.wrapping_add(1),
        }
        r
    })
}

fn exchange_on(usart: &mut Usart2, req: &[u8], answer: &mut [u8]) -> Result<(), LinkError> {
    // A late answer of an exchange that timed out must not be taken for this one's.
    while let Ok(Some(_)) = usart.try_read_byte() {}
    for &b in req {
        usart.write_byte(b).map_err(LinkError::Usart)?;
    }
    for slot in answer.iter_mut() {
        *slot = read_byte(usart)?;
    }
    match (req.first(), answer.first()) {
        (Some(&q), Some(&a)) if a != q.wrapping_add(ANSWER) => Err(LinkError::BadAnswer(a)),
        _ => Ok(()),
    }
}

fn read_byte(usart: &mut Usart2) -> Result<u8, LinkError> {
    for _ in 0..LINK_SPIN {
        if let Some(b) = usart.try_read_byte().map_err(LinkError::Usart)? {
            return Ok(b);
        }
    }
    Err(LinkError::TimedOut)
}

/// Reports `ns` of waiting; returns the bytes the bridge queued on USART3 meanwhile.
fn report_wait(ns: u32) -> Result<u16, LinkError> {
    let mut a = [0u8; 3];
    let [b0, b1, b2, b3] = ns.to_le_bytes();
    exchange(&[WAITED, b0, b1, b2, b3], &mut a)?;
    critical_section::with(|cs| {
        if let Some(l) = LINK.borrow_ref_mut(cs).as_mut() {
            l.stats.waited_ns = l.stats.waited_ns.wrapping_add(u64::from(ns));
        }
    });
    Ok(u16::from_le_bytes([a[1], a[2]]))
}

fn set_level(req: u8, high: bool) -> Result<(), LinkError> {
    exchange(&[req, u8::from(high)], &mut [0])
}

/// The modem's `PWR_ON` (the board's PB2 through an open-drain buffer): each level change
/// goes to the bridge, which sets the emulator's pin at the current virtual time.
pub struct QemuPwrOn {
    _private: (),
}

/// The modem's `RESET_N` (the board's PC4), as [`QemuPwrOn`].
pub struct QemuResetN {
    _private: (),
}

/// The modem's power sense (the board's PB12, RI; V_INT on the emulator), read from the
/// bridge.
pub struct QemuVint {
    _private: (),
}

impl ErrorType for QemuPwrOn {
    type Error = LinkError;
}
impl ErrorType for QemuResetN {
    type Error = LinkError;
}
impl ErrorType for QemuVint {
    type Error = LinkError;
}

impl OutputPin for QemuPwrOn {
    fn set_low(&mut self) -> Result<(), LinkError> {
        set_level(PWR_ON, false)
    }
    fn set_high(&mut self) -> Result<(), LinkError> {
        set_level(PWR_ON, true)
    }
}

impl OutputPin for QemuResetN {
    fn set_low(&mut self) -> Result<(), LinkError> {
        set_level(RESET_N, false)
    }
    fn set_high(&mut self) -> Result<(), LinkError> {
        set_level(RESET_N, true)
    }
}

impl InputPin for QemuVint {
    fn is_high(&mut self) -> Result<bool, LinkError> {
        let mut a = [0u8; 2];
        exchange(&[V_INT], &mut a)?;
        Ok(a[1] != 0)
    }
    fn is_low(&mut self) -> Result<bool, LinkError> {
        self.is_high().map(|h| !h)
    }
}

/// The modem driver's delay under QEMU: the board's SysTick [`Delay`], which first tells the
/// bridge how long it is about to wait (the bridge advances the emulator's virtual clock by
/// as much and queues the modem's bytes that fall due), then waits that long, then (when the
/// bridge queued bytes) until the first of them is in USART3's receiver. So the modem's
/// clock follows the firmware's, one wait at a time.
///
/// Unlike the board's delay, it never polls the SysTick counter in a loop: under `-icount`
/// each register read costs QEMU real microseconds (an I/O access ends its translation
/// block), so the board's sub-ms spin would make one 100 µs poll of the modem driver cost
/// milliseconds of host time. It sleeps in WFI to the last tick before the deadline (free with
/// `sleep=off`), reads the counter once, and spins the rest as counted instructions
/// (`-icount shift=0`: one instruction is one virtual nanosecond). The wait is as long as on
/// the board, to the nanosecond of virtual time.
///
/// A link failure leaves the local wait as it is (the emulator's clock then lags).
pub struct BridgedDelay {
    inner: Delay,
}

impl BridgedDelay {
    /// Wraps the board's [`Delay`] (`Mono::delay`).
    pub fn new(inner: Delay) -> Self {
        Self { inner }
    }

    fn wait_ns(&mut self, ns: u64) {
        let period = u64::from(self.inner.cycles_per_tick());
        let cycles_per_us = (period / 1_000).max(1);
        let mut left = ns;
        while left > 0 {
            let n = left.min(1_000_000_000);
            left -= n;
            let end = self.inner.now_cycles() + (n * period).div_ceil(1_000_000);
            let queued = report_wait(n as u32).unwrap_or(0);
            self.inner.wait_for_tick(end / period);
            let now = self.inner.now_cycles();
            if end > now {
                spin_ns((end - now) * 1_000 / cycles_per_us);
            }
            if queued > 0 {
                wait_modem_byte();
            }
        }
    }
}

/// Spins `ns` nanoseconds of QEMU virtual time: with `-icount shift=0` every instruction is
/// one virtual nanosecond, and the loop is [`SPIN_BODY`] instructions per iteration (long, so
/// that QEMU's per-translation-block icount bookkeeping does not dominate the host cost).
fn spin_ns(ns: u64) {
    let n = u32::try_from(ns / SPIN_BODY).unwrap_or(u32::MAX);
    #[cfg(target_arch = "arm")]
    if n > 0 {
        // SAFETY: a register-only countdown loop; no memory, no stack, flags clobbered (the
        // default for `asm!`).
        unsafe {
            core::arch::asm!(
                "2:",
                ".rept 30",
                "nop",
                ".endr",
                "subs {0}, {0}, #1",
                "bne 2b",
                inout(reg) n => _,
                options(nomem, nostack),
            );
        }
    }
    #[cfg(not(target_arch = "arm"))]
    let _ = n;
}

/// Instructions per iteration of [`spin_ns`]'s loop: 30 `nop`, `subs`, `bne`.
const SPIN_BODY: u64 = 32;

/// Waits (bounded) until USART3's receiver holds a byte.
fn wait_modem_byte() {
    // SAFETY: a read of USART3's status register, which has no side effect on its own
    // (the flags clear only on the DR read that follows, which the driver does).
    let usart3 = unsafe { &*pac::USART3::PTR };
    for _ in 0..RX_SPIN {
        if usart3.sr().read().rxne().bit_is_set() {
            return;
        }
    }
}

impl DelayNs for BridgedDelay {
    fn delay_ns(&mut self, ns: u32) {
        self.wait_ns(u64::from(ns));
    }
    fn delay_us(&mut self, us: u32) {
        self.wait_ns(u64::from(us) * 1_000);
    }
    fn delay_ms(&mut self, ms: u32) {
        self.wait_ns(u64::from(ms) * 1_000_000);
    }
}

/// The deep-sleep stand-in: tells the bridge the firmware sleeps `ms` (it advances the
/// emulator's clock by as much), waits that long on the SysTick (reloading every 100 ms; with
/// `-icount sleep=off` each WFI costs QEMU nothing), then resets the core (SYSRESETREQ), as
/// the RTC wake-up from STANDBY resets the board. RAM keeps the overlay and the retained
/// bytes across the reset.
pub fn sleep_for_ms(ms: u64) -> ! {
    let ms32 = u32::try_from(ms).unwrap_or(u32::MAX);
    let [b0, b1, b2, b3] = ms32.to_le_bytes();
    let _ = exchange(&[SLEEP, b0, b1, b2, b3], &mut [0]);
    // SAFETY: this function never returns and resets the core at its end; the `Mono` that
    // owned the SysTick is never read again.
    let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
    const PERIOD_MS: u64 = 100;
    syst.disable_counter();
    syst.set_reload((SYSCLK_HZ / 1000) * PERIOD_MS as u32 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
    let mut slept = 0;
    while slept < ms {
        cortex_m::asm::wfi();
        if syst.has_wrapped() {
            slept += PERIOD_MS;
        }
    }
    cortex_m::peripheral::SCB::sys_reset()
}
