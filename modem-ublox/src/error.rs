//! Error enums, one per operation family. Each is small, `Copy`, comparable in tests, and says
//! what the caller can do about it.

use core::fmt;

/// A UART error, erased to its [`embedded_io::ErrorKind`] so the driver's error types do not
/// carry the HAL's error type.
pub type UartErrorKind = embedded_io::ErrorKind;

/// A pin error, erased to its [`embedded_hal::digital::ErrorKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinError(pub embedded_hal::digital::ErrorKind);

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pin error: {:?}", self.0)
    }
}

impl core::error::Error for PinError {}

#[cfg(feature = "defmt")]
impl defmt::Format for PinError {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "PinError({})", defmt::Debug2Format(&self.0))
    }
}

/// The result of one AT command exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AtError {
    /// No final result code (`OK`, `ERROR`, …) within the command's timeout. The driver counts
    /// consecutive timeouts; see [`Modem::recover`](crate::Modem::recover).
    Timeout,
    /// A plain `ERROR` without a code.
    Error,
    /// `+CME ERROR: <code>`. Verbose (`AT+CMEE=2`) texts the driver knows are mapped to their
    /// 3GPP TS 27.007 number; unknown texts become 100 ("unknown").
    Cme(u16),
    /// `+CMS ERROR: <code>`.
    Cms(u16),
    /// `ABORTED`: the command was interrupted (by a character sent while it ran, or by the
    /// modem). Retrying is usually right.
    Aborted,
    /// A line that may have been the command's own answer did not fit the driver's line
    /// buffer (it starts with the answer's prefix, or an unprefixed answer never came). Lines
    /// that cannot be the answer (URCs such as an SMS PDU, noise) never cause this. The rest
    /// of the line was skipped and the exchange ran to its final result code, so the engine
    /// is in sync again.
    LineTooLong,
    /// The response did not have the expected shape (a missing or malformed information line).
    Unexpected,
    /// An argument cannot be sent (a quote or control character in a string, a string too
    /// long for the command buffer).
    InvalidArgument,
    /// The modem rebooted on its own (echo came back, registration reporting reset, V_INT
    /// edge). The driver re-initialised it; sockets and the data context are gone.
    ModemRebooted,
    /// V_INT says the modem is off.
    PoweredOff,
    /// The UART failed. Whatever was being received is dropped and the next command
    /// resynchronises first (see [`Modem::needs_recovery`](crate::Modem::needs_recovery)).
    Uart(UartErrorKind),
}

impl fmt::Display for AtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("AT command timed out"),
            Self::Error => f.write_str("ERROR"),
            Self::Cme(c) => write!(f, "+CME ERROR: {c}"),
            Self::Cms(c) => write!(f, "+CMS ERROR: {c}"),
            Self::Aborted => f.write_str("command aborted"),
            Self::LineTooLong => f.write_str("response line longer than the line buffer"),
            Self::Unexpected => f.write_str("unexpected response"),
            Self::InvalidArgument => f.write_str("argument cannot be sent"),
            Self::ModemRebooted => f.write_str("modem rebooted"),
            Self::PoweredOff => f.write_str("modem is powered off"),
            Self::Uart(k) => write!(f, "UART error: {k:?}"),
        }
    }
}

impl core::error::Error for AtError {}

/// Powering the modem on or off, resetting it, or initialising it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PowerError {
    /// The modem never answered `AT` (wrong baud rate, no power, modem dead). Check the UART
    /// rate ([`Modem::probe_baud`](crate::Modem::probe_baud)) or cut the supply.
    NoResponse,
    /// The modem is still on after every power-off method the model allows (V_INT stayed
    /// high, or it still answers `AT`). Cut VCC if the board can.
    StillOn,
    /// `AT+CGMM` named a model this build does not support (its family feature is off, or it
    /// is not a SARA module).
    UnsupportedModel,
    /// A pin could not be driven or read.
    Pin(PinError),
    /// An initialisation command failed.
    At(AtError),
}

impl fmt::Display for PowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoResponse => f.write_str("modem does not answer AT"),
            Self::StillOn => f.write_str("modem did not power off"),
            Self::UnsupportedModel => f.write_str("unsupported modem model"),
            Self::Pin(_) => f.write_str("a power or reset pin failed"),
            Self::At(_) => f.write_str("AT exchange of the power sequence failed"),
        }
    }
}

impl core::error::Error for PowerError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Pin(e) => Some(e),
            Self::At(e) => Some(e),
            _ => None,
        }
    }
}

impl From<AtError> for PowerError {
    fn from(e: AtError) -> Self {
        Self::At(e)
    }
}

impl From<PinError> for PowerError {
    fn from(e: PinError) -> Self {
        Self::Pin(e)
    }
}

/// The SIM is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SimError {
    /// No SIM in the holder (`+CME ERROR: 10` / `SIM not inserted`).
    NotInserted,
    /// The SIM wants a PIN (or PUK); the driver does not enter PINs.
    PinRequired,
    /// The module does not accept this SIM (`+CME ERROR: 15`, "SIM wrong": e.g. a
    /// network-locked module). Waiting does not help.
    Wrong,
    /// The SIM stayed busy or failing (`+CME ERROR: 14` / `13`) for the whole budget, or the
    /// budget ended while `AT+CPIN?` was still unanswered.
    NotReady,
    /// Any other failure of the exchange.
    At(AtError),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInserted => f.write_str("SIM not inserted"),
            Self::PinRequired => f.write_str("SIM PIN required"),
            Self::Wrong => f.write_str("SIM not accepted (SIM wrong)"),
            Self::NotReady => f.write_str("SIM not ready within the budget"),
            Self::At(_) => f.write_str("SIM status query failed"),
        }
    }
}

impl core::error::Error for SimError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::At(e) => Some(e),
            _ => None,
        }
    }
}

impl From<AtError> for SimError {
    fn from(e: AtError) -> Self {
        Self::At(e)
    }
}

/// Network registration did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RegistrationError {
    /// The caller's budget ran out before the modem registered (also when it ends while a
    /// command is still unanswered). Carries the last status seen (packet-switched domain for
    /// U2/G3, EPS for R4/R5).
    Timeout(crate::RegStatus),
    /// The network denied registration (status 3) for the whole budget, interventions included.
    Denied,
    /// The modem rebooted during registration; it has been re-initialised, call again.
    ModemRebooted,
    /// A command failed.
    At(AtError),
}

impl fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(s) => write!(f, "not registered within the budget (last {s:?})"),
            Self::Denied => f.write_str("registration denied"),
            Self::ModemRebooted => f.write_str("modem rebooted during registration"),
            Self::At(_) => f.write_str("registration command failed"),
        }
    }
}

impl core::error::Error for RegistrationError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::At(e) => Some(e),
            _ => None,
        }
    }
}

impl From<AtError> for RegistrationError {
    fn from(e: AtError) -> Self {
        match e {
            AtError::ModemRebooted => Self::ModemRebooted,
            e => Self::At(e),
        }
    }
}

/// Activating the packet data context failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DataError {
    /// Not registered on the packet-switched network (`+CME ERROR: 30`/`107`, attach failed).
    NotRegistered,
    /// PDP authentication failed (`+CME ERROR: 149`): check user name, password, auth type.
    AuthFailed,
    /// The APN or service is not subscribed / unknown (`+CME ERROR: 133`, `127`, `132`).
    NotSubscribed,
    /// The network rejected activation (`+CME ERROR: 148`, a non-zero `+UUPSDA` result, …).
    Rejected(u16),
    /// The budget ran out before the context was active (also when it ends while a command is
    /// still unanswered).
    Timeout,
    /// The modem rebooted; it has been re-initialised, register again.
    ModemRebooted,
    /// A command failed.
    At(AtError),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRegistered => f.write_str("not registered for packet data"),
            Self::AuthFailed => f.write_str("PDP authentication failed"),
            Self::NotSubscribed => f.write_str("APN or service not subscribed"),
            Self::Rejected(c) => write!(f, "PDP activation rejected ({c})"),
            Self::Timeout => f.write_str("PDP activation did not finish within the budget"),
            Self::ModemRebooted => f.write_str("modem rebooted"),
            Self::At(_) => f.write_str("data context command failed"),
        }
    }
}

impl core::error::Error for DataError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::At(e) => Some(e),
            _ => None,
        }
    }
}

impl From<AtError> for DataError {
    fn from(e: AtError) -> Self {
        match e {
            AtError::ModemRebooted => Self::ModemRebooted,
            AtError::Cme(30) | AtError::Cme(107) => Self::NotRegistered,
            AtError::Cme(149) => Self::AuthFailed,
            AtError::Cme(127) | AtError::Cme(132) | AtError::Cme(133) => Self::NotSubscribed,
            AtError::Cme(c @ (134 | 148)) => Self::Rejected(c),
            e => Self::At(e),
        }
    }
}

/// A socket operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SocketError {
    /// All seven modem sockets are in use, even after sweeping stale ones.
    NoFreeSocket,
    /// The handle is not open (closed already, or never created by this driver).
    InvalidSocket,
    /// The modem rebooted since this socket was created: it no longer exists. Create a new
    /// one (after registering and activating data again).
    Invalidated,
    /// The peer closed the connection and every byte it sent has been read.
    Closed,
    /// The operation does not fit the socket (TCP call on a UDP socket, UDP send without a
    /// remote, IPv6 address, write on a closed socket).
    Unsupported,
    /// A datagram longer than 1024 bytes (512 in hex mode).
    TooLarge,
    /// The modem took no bytes (`+USOWR: <h>,0` / `+USOST: <h>,0`) on the first try and
    /// three retries: its send buffer is full. Nothing was sent; try again later.
    WouldBlock,
    /// The modem confirmed only this many bytes of a UDP datagram (`+USOST: <h>,<n>` with `n`
    /// smaller than the datagram): the peer got a shorter datagram, or none. Not retried (the
    /// datagram could arrive twice).
    Truncated(u16),
    /// `+USOER` reported this BSD-style socket error (e.g. 111 refused, 110 timed out,
    /// 104 reset). Retryable ones (11, 172) are retried by the driver first.
    Socket(u16),
    /// A command failed.
    At(AtError),
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoFreeSocket => f.write_str("no free modem socket"),
            Self::InvalidSocket => f.write_str("socket is not open"),
            Self::Invalidated => f.write_str("socket lost in a modem reboot"),
            Self::Closed => f.write_str("connection closed by the peer"),
            Self::Unsupported => f.write_str("operation not supported on this socket"),
            Self::TooLarge => f.write_str("datagram too large"),
            Self::WouldBlock => f.write_str("the modem accepts no data right now"),
            Self::Truncated(n) => write!(f, "only {n} bytes of the datagram were sent"),
            Self::Socket(e) => write!(f, "socket error {e}"),
            Self::At(_) => f.write_str("socket command failed"),
        }
    }
}

impl core::error::Error for SocketError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::At(e) => Some(e),
            _ => None,
        }
    }
}

impl From<AtError> for SocketError {
    fn from(e: AtError) -> Self {
        match e {
            AtError::ModemRebooted => Self::Invalidated,
            e => Self::At(e),
        }
    }
}

impl embedded_nal::TcpError for SocketError {
    fn kind(&self) -> embedded_nal::TcpErrorKind {
        match self {
            Self::Closed | Self::Invalidated | Self::Socket(104 | 107 | 65) => {
                embedded_nal::TcpErrorKind::PipeClosed
            }
            _ => embedded_nal::TcpErrorKind::Other,
        }
    }
}

/// Any error of the driver: the family errors above, each converted with `?` (a `From` impl
/// per family), so a function that runs a whole wake cycle returns `Result<_, Error>` without
/// conversion code. The family error is kept whole: match on it when the next step depends
/// on it ([`DataError::AuthFailed`] → check the credentials), or ask the two questions that
/// cut across families, [`is_modem_rebooted`](Self::is_modem_rebooted) and
/// [`is_timeout`](Self::is_timeout).
///
/// Transparent: `Display` is the family error's, and so is [`core::error::Error::source`]
/// (for a family error that wraps an [`AtError`] or a [`PinError`], that one).
///
/// ```
/// # use embedded_hal::{delay::DelayNs, digital::{InputPin, OutputPin}};
/// # use embedded_io::{Read, ReadReady, Write};
/// use modem_ublox::{Apn, Error, Modem, Registration};
///
/// /// Register, bring up data, and read the ICCID: three families of errors, one `?` each.
/// fn attach<U, D, P, R, V>(m: &mut Modem<U, D, P, R, V>) -> Result<[u8; 22], Error>
/// where
///     U: Read + Write + ReadReady,
///     D: DelayNs,
///     P: OutputPin,
///     R: OutputPin,
///     V: InputPin,
/// {
///     m.register(&Registration::new(60_000))?; // RegistrationError
///     m.activate_data(&Apn::new("iot.example"), 30_000)?; // DataError
///     let iccid = m.iccid()?; // AtError
///     let mut out = [b' '; 22];
///     out[..iccid.as_str().len()].copy_from_slice(iccid.as_str().as_bytes());
///     Ok(out)
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// A single AT exchange failed (`iccid`, `poll`, the PSM and eDRX settings, …).
    At(AtError),
    /// Powering on or off, resetting or initialising failed.
    Power(PowerError),
    /// The SIM is not usable.
    Sim(SimError),
    /// Network registration failed.
    Registration(RegistrationError),
    /// The packet data context could not be activated.
    Data(DataError),
    /// A socket operation failed.
    Socket(SocketError),
    /// A pin could not be driven or read.
    Pin(PinError),
}

impl Error {
    /// The modem rebooted (or was restarted by the driver's recovery): sockets and the data
    /// context are gone, and the driver has re-initialised the modem. The next step is to
    /// register and activate data again.
    pub fn is_modem_rebooted(&self) -> bool {
        matches!(
            self,
            Self::At(AtError::ModemRebooted)
                | Self::Power(PowerError::At(AtError::ModemRebooted))
                | Self::Sim(SimError::At(AtError::ModemRebooted))
                | Self::Registration(RegistrationError::ModemRebooted)
                | Self::Data(DataError::ModemRebooted)
                | Self::Socket(SocketError::Invalidated)
        )
    }

    /// A command or a budget ran out of time ([`AtError::Timeout`] in any family, or the
    /// budget of [`wait_sim_ready`](crate::Modem::wait_sim_ready),
    /// [`register`](crate::Modem::register) or [`activate_data`](crate::Modem::activate_data)).
    /// Usually "try again at the next wake".
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Self::At(AtError::Timeout)
                | Self::Power(PowerError::At(AtError::Timeout))
                | Self::Sim(SimError::NotReady | SimError::At(AtError::Timeout))
                | Self::Registration(
                    RegistrationError::Timeout(_) | RegistrationError::At(AtError::Timeout)
                )
                | Self::Data(DataError::Timeout | DataError::At(AtError::Timeout))
                | Self::Socket(SocketError::At(AtError::Timeout))
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::At(e) => e.fmt(f),
            Self::Power(e) => e.fmt(f),
            Self::Sim(e) => e.fmt(f),
            Self::Registration(e) => e.fmt(f),
            Self::Data(e) => e.fmt(f),
            Self::Socket(e) => e.fmt(f),
            Self::Pin(e) => e.fmt(f),
        }
    }
}

/// Transparent: the family error's `source()` (its `Display` is the family error's too, so
/// returning the family error itself would print its message twice in a chain).
impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::At(e) => e.source(),
            Self::Power(e) => e.source(),
            Self::Sim(e) => e.source(),
            Self::Registration(e) => e.source(),
            Self::Data(e) => e.source(),
            Self::Socket(e) => e.source(),
            Self::Pin(e) => e.source(),
        }
    }
}

macro_rules! into_error {
    ($($family:ident => $variant:ident),*) => {$(
        impl From<$family> for Error {
            fn from(e: $family) -> Self {
                Self::$variant(e)
            }
        }
    )*};
}

into_error!(
    AtError => At,
    PowerError => Power,
    SimError => Sim,
    RegistrationError => Registration,
    DataError => Data,
    SocketError => Socket,
    PinError => Pin
);

#[cfg(test)]
mod tests {
    use super::*;

    fn is_error<E: core::error::Error + fmt::Debug + Clone + Copy + PartialEq + Eq>() {}

    #[test]
    fn every_error_type_is_a_core_error() {
        is_error::<PinError>();
        is_error::<AtError>();
        is_error::<PowerError>();
        is_error::<SimError>();
        is_error::<RegistrationError>();
        is_error::<DataError>();
        is_error::<SocketError>();
        is_error::<Error>();
        let e: &dyn core::error::Error = &PinError(embedded_hal::digital::ErrorKind::Other);
        assert!(e.to_string().contains("pin error"));
    }
}
