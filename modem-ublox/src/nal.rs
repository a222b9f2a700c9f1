//! `embedded-nal` 0.9 `TcpClientStack` and `UdpClientStack` on top of the socket API.
//!
//! Both traits define `socket()`: call them as `TcpClientStack::socket(&mut modem)` or
//! `UdpClientStack::socket(&mut modem)`. `receive` returns `WouldBlock` when nothing is
//! waiting; each such call costs one `AT+USORD=<h>,0` (or `AT+USORF`) exchange, so poll with
//! a delay or use [`Modem::wait_readable`] first. `connect` and `send` block until the modem
//! answered (bounded by the command timeouts); `send` returns `WouldBlock` only when the modem
//! took no bytes at all ([`SocketError::WouldBlock`]), `connect` never. Each call costs what
//! the [`Modem`] method it calls costs (see their "Cost" lines, and the
//! [recovery cost](Modem#recovery-cost) any command may pay after an earlier timeout).

use core::net::SocketAddr;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};
use embedded_nal::{TcpClientStack, UdpClientStack};

use crate::error::SocketError;
use crate::modem::Modem;
use crate::socket::{Protocol, SocketId};

impl<U, D, P, R, V, const L: usize> TcpClientStack for Modem<U, D, P, R, V, L>
where
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
    R: OutputPin,
    V: InputPin,
{
    type TcpSocket = SocketId;
    type Error = SocketError;

    fn socket(&mut self) -> Result<SocketId, SocketError> {
        self.open_socket(Protocol::Tcp)
    }

    fn connect(
        &mut self,
        socket: &mut SocketId,
        remote: SocketAddr,
    ) -> nb::Result<(), SocketError> {
        Modem::connect(self, *socket, remote).map_err(nb::Error::Other)
    }

    fn send(&mut self, socket: &mut SocketId, buffer: &[u8]) -> nb::Result<usize, SocketError> {
        Modem::send(self, *socket, buffer).map_err(would_block)
    }

    fn receive(
        &mut self,
        socket: &mut SocketId,
        buffer: &mut [u8],
    ) -> nb::Result<usize, SocketError> {
        match Modem::receive(self, *socket, buffer) {
            Ok(0) if !buffer.is_empty() => Err(nb::Error::WouldBlock),
            Ok(n) => Ok(n),
            Err(e) => Err(nb::Error::Other(e)),
        }
    }

    fn close(&mut self, socket: SocketId) -> Result<(), SocketError> {
        match Modem::close(self, socket) {
            // A socket lost in a modem reboot is closed already.
            Err(SocketError::Invalidated) => Ok(()),
            r => r,
        }
    }
}

impl<U, D, P, R, V, const L: usize> UdpClientStack for Modem<U, D, P, R, V, L>
where
    U: Read + Write + ReadReady,
    D: DelayNs,
    P: OutputPin,
    R: OutputPin,
    V: InputPin,
{
    type UdpSocket = SocketId;
    type Error = SocketError;

    fn socket(&mut self) -> Result<SocketId, SocketError> {
        self.open_socket(Protocol::Udp)
    }

    fn connect(&mut self, socket: &mut SocketId, remote: SocketAddr) -> Result<(), SocketError> {
        Modem::connect(self, *socket, remote)
    }

    fn send(&mut self, socket: &mut SocketId, buffer: &[u8]) -> nb::Result<(), SocketError> {
        Modem::send(self, *socket, buffer)
            .map(|_| ())
            .map_err(would_block)
    }

    fn receive(
        &mut self,
        socket: &mut SocketId,
        buffer: &mut [u8],
    ) -> nb::Result<(usize, SocketAddr), SocketError> {
        match self.receive_from(*socket, buffer) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(nb::Error::WouldBlock),
            Err(e) => Err(nb::Error::Other(e)),
        }
    }

    fn close(&mut self, socket: SocketId) -> Result<(), SocketError> {
        match Modem::close(self, socket) {
            Err(SocketError::Invalidated) => Ok(()),
            r => r,
        }
    }
}

/// [`SocketError::WouldBlock`] is `nb`'s `WouldBlock`; everything else an error.
fn would_block(e: SocketError) -> nb::Error<SocketError> {
    match e {
        SocketError::WouldBlock => nb::Error::WouldBlock,
        e => nb::Error::Other(e),
    }
}
