//! Compile checks of the public surface, run as doctests: every public item is reachable at
//! the crate root, and the modules behind it are private (not semver surface).
//!
//! ```
//! #![deny(unused_imports)]
//! #[allow(unused_imports)]
//! use cloud_proto::{
//!     admit, authenticate, handle_datagram, open_down, open_up, peek_up, respond, seal_chunk,
//!     seal_down, seal_up, serve_chunks, stream_encode, stream_encoded_max, verify_up,
//!     Admission, AdmitError, CheckIn, ChunkRange, ChunkRequest, Counters, DeclineReason,
//!     DeferReason, Decision, DeviceConfig, DeviceEndpoint, DeviceId, DeviceStore, Down,
//!     DownFrame, DownloadProgress, EncodeError, Event, FirmwareVersion, FrameError, Goodbye,
//!     Keys, LastFrame, ManifestRef, MemoryStore, Millis, NackCode, Object, OtaReport, OtaState,
//!     Publish, ReplayPolicy, Request, RequestError, SendError, Served, SleepGrant,
//!     StreamDecoder, StreamError, Timeout, Transmit, Up, UpFrame, UpdateDecision, UpdateId,
//!     UpdateOffer, UpdateResult, UpdateStatus, Verified, VerifiedUp, Welcome, CHUNK_HEADER_LEN,
//!     DOWN_HEADER_LEN, KIND_CHUNK, KIND_DOWN, KIND_UP, MAX_CHUNKS_PER_REQUEST, MAX_CHUNK_DATA,
//!     MAX_CHUNK_DATA_DATAGRAM, MAX_FRAME, MAX_INLINE_MANIFEST, MAX_PUBLISHES, MAX_RANGES,
//!     PROTOCOL_VERSION, TAG_LEN, UP_HEADER_LEN,
//! };
//! ```
//!
//! ```compile_fail
//! use cloud_proto::server::handle_datagram;
//! ```
//! ```compile_fail
//! use cloud_proto::frame::seal_up;
//! ```
//! ```compile_fail
//! use cloud_proto::stream::StreamDecoder;
//! ```
//! ```compile_fail
//! use cloud_proto::device::DeviceEndpoint;
//! ```
//! ```compile_fail
//! use cloud_proto::message::Up;
//! ```
