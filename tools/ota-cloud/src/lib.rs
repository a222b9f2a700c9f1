#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod postgres;
pub mod seal;
mod sqlite;
pub mod store;

pub use seal::{MasterKey, RootKey, SealError};
pub use sqlite::{OpenError, SqliteOptions, SqliteStore};
pub use store::{
    CheckInReport, Device, DeviceStatus, Effects, FrameCommit, NewDevice, NewProduct, Product,
    ProductId, PublishId, Release, ReleaseBody, ReleaseDigest, Store, StoreError, StoreResult,
    StoredPublish,
};
