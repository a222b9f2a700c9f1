#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod keyfile;
pub mod limit;
pub mod load;
pub mod postgres;
pub mod release;
pub mod seal;
pub mod server;
mod sqlite;
pub mod store;
pub mod transport;

pub use seal::{MasterKey, RootKey, SealError};
pub use sqlite::{OpenError, SqliteOptions, SqliteStore};
pub use store::{
    CheckInReport, Device, DeviceStatus, Effects, FrameCommit, NewDevice, NewProduct, Product,
    ProductId, PublishId, Release, ReleaseBody, ReleaseDigest, Store, StoreError, StoreResult,
    StoredPublish,
};
