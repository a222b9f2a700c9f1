//! Compile checks, run as doctests: every outcome a caller must act on is `#[must_use]`, so
//! dropping one is a warning (an error under `deny(unused_must_use)`). Each `compile_fail`
//! block below is the compiling block with one `let _ =` removed.
//!
//! ```
//! #![deny(unused_must_use)]
//! use cloud_proto::*;
//! type Failure = Box<dyn core::error::Error>;
//! fn acted_on(dev: &mut DeviceEndpoint, v: Verified<'_>) -> Result<(), Failure> {
//!     let from: core::net::SocketAddr = "192.0.2.1:1".parse()?;
//!     let _ = dev.handle_timeout(0);
//!     let _ = dev.send(0, &Up::Goodbye(Goodbye { sleep_s: 1 }))?;
//!     let _ = dev.handle_datagram(0, &[])?;
//!     let _ = dev.checkpoint();
//!     let _ = dev.poll_timeout();
//!     let _ = admit(v, None, from, 0, ReplayPolicy::DEFAULT);
//!     let mut store = MemoryStore::default();
//!     let _ = handle_datagram(&[], from, &mut store, 0, ReplayPolicy::DEFAULT)?;
//!     Ok(())
//! }
//! ```
//!
//! An ignored `Timeout::Retransmit` silently skips a retransmission:
//! ```compile_fail
//! #![deny(unused_must_use)]
//! use cloud_proto::*;
//! fn dropped(dev: &mut DeviceEndpoint) {
//!     dev.handle_timeout(0);
//! }
//! ```
//!
//! A dropped `Transmit` (`?;`) never goes on the wire, nor are its counters persisted:
//! ```compile_fail
//! #![deny(unused_must_use)]
//! use cloud_proto::*;
//! fn dropped(dev: &mut DeviceEndpoint) -> Result<(), SendError> {
//!     dev.send(0, &Up::Goodbye(Goodbye { sleep_s: 1 }))?;
//!     Ok(())
//! }
//! ```
//!
//! A dropped `Event` loses a reply or a chunk:
//! ```compile_fail
//! #![deny(unused_must_use)]
//! use cloud_proto::*;
//! fn dropped(dev: &mut DeviceEndpoint) -> Result<(), FrameError> {
//!     dev.handle_datagram(0, &[])?;
//!     Ok(())
//! }
//! ```
//!
//! A reservation that is due must be persisted:
//! ```compile_fail
//! #![deny(unused_must_use)]
//! use cloud_proto::*;
//! fn dropped(dev: &mut DeviceEndpoint) {
//!     dev.checkpoint();
//! }
//! ```
//!
//! The next deadline:
//! ```compile_fail
//! #![deny(unused_must_use)]
//! use cloud_proto::*;
//! fn dropped(dev: &mut DeviceEndpoint) {
//!     dev.poll_timeout();
//! }
//! ```
//!
//! An `Admission` names the record to store and the answer to send:
//! ```compile_fail
//! #![deny(unused_must_use)]
//! use cloud_proto::*;
//! fn dropped(v: Verified<'_>, from: core::net::SocketAddr) {
//!     admit(v, None, from, 0, ReplayPolicy::DEFAULT);
//! }
//! ```
//!
//! A request whose answer the device waits for (`handle_datagram(..)?;`):
//! ```compile_fail
//! #![deny(unused_must_use)]
//! use cloud_proto::*;
//! type Failure = Box<dyn core::error::Error>;
//! fn dropped(store: &mut MemoryStore, from: core::net::SocketAddr) -> Result<(), Failure> {
//!     handle_datagram(&[], from, store, 0, ReplayPolicy::DEFAULT)?;
//!     Ok(())
//! }
//! ```
