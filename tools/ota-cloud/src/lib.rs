#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod admin;
pub mod console;
pub mod events;
pub mod frame_cache;
pub mod keyfile;
pub mod limit;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod postgres;
pub mod release;
pub mod rollout;
pub mod seal;
pub mod server;
mod sqlite;
pub mod store;
pub mod transport;

pub use rollout::{
    NewRollout, ReleaseId, Rollout, RolloutChange, RolloutId, RolloutProgress, RolloutState, Share,
    Target,
};
pub use seal::{MasterKey, RootKey, SealError};
pub use sqlite::{OpenError, SqliteOptions, SqliteStore};
pub use store::{
    CheckInReport, Device, DeviceStatus, DeviceUpdate, Effects, FleetRow, FrameCommit, NewDevice,
    NewProduct, Product, ProductId, PublishId, Release, ReleaseBody, ReleaseDigest, Store,
    StoreError, StoreResult, StoredPublish, Wake, WAKES_KEPT,
};
