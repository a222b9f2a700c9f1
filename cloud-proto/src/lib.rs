#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

// Declared first: the log macros are visible in the modules below.
#[macro_use]
mod log;

// One convention for the whole crate: private modules, every public item re-exported flat at
// the root (`cloud_proto::handle_datagram`, not `cloud_proto::server::handle_datagram`).
mod device;
mod frame;
mod message;
mod server;
mod stream;

pub use device::{
    Counters, DeviceConfig, DeviceEndpoint, Event, Millis, SendError, Timeout, Transmit,
};
pub use frame::{
    open_down, open_up, peek_up, seal_chunk, seal_down, seal_up, verify_up, DeviceId, DownFrame,
    EncodeError, FrameError, Keys, UpFrame, VerifiedUp, CHUNK_HEADER_LEN, DOWN_HEADER_LEN,
    KIND_CHUNK, KIND_DOWN, KIND_UP, MAX_CHUNK_DATA, MAX_CHUNK_DATA_DATAGRAM, MAX_FRAME,
    PROTOCOL_VERSION, TAG_LEN, UP_HEADER_LEN,
};
pub use message::{
    CheckIn, ChunkRange, ChunkRequest, Decision, DeclineReason, DeferReason, Down,
    DownloadProgress, FirmwareVersion, Goodbye, ManifestRef, NackCode, Object, OtaReport, OtaState,
    Publish, SleepGrant, Up, UpdateDecision, UpdateId, UpdateOffer, UpdateResult, UpdateStatus,
    Welcome, MAX_CHUNKS_PER_REQUEST, MAX_INLINE_MANIFEST, MAX_PUBLISHES, MAX_RANGES,
};
#[cfg(feature = "std")]
pub use server::MemoryStore;
pub use server::{
    admit, authenticate, handle_datagram, respond, serve_chunks, Admission, AdmitError,
    DeviceStore, LastFrame, ReplayPolicy, Request, RequestError, Served, Verified,
};
pub use stream::{stream_encode, stream_encoded_max, StreamDecoder, StreamError};

#[cfg(doctest)]
mod must_use;
#[cfg(doctest)]
mod surface;
