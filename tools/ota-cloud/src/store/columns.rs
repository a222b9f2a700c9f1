//! Column codecs shared by the SQL stores: both keep integers as `i64` and the cloud-proto
//! enums by discriminant, so a value read back is checked the same way on SQLite and
//! PostgreSQL (a value out of range is `StoreError::Corrupt`, never a panic).

use cloud_proto::{FirmwareVersion, OtaState, UpdateResult};

use crate::store::{StoreError, StoreResult};

/// The shape of an SPKI PEM (`ota-tool keygen`'s public key file); the signature check itself
/// is the release upload's (ota-core's verifier).
pub(crate) fn is_spki_pem(s: &str) -> bool {
    let s = s.trim();
    s.starts_with("-----BEGIN PUBLIC KEY-----") && s.ends_with("-----END PUBLIC KEY-----")
}

pub(crate) fn to_i64(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid("a value above i64::MAX"))
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn to_u64(v: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

pub(crate) fn narrow<T: TryFrom<i64>>(v: i64, what: &str) -> StoreResult<T> {
    T::try_from(v).map_err(|_| corrupt(what))
}

pub(crate) fn ota_state(v: i64) -> StoreResult<OtaState> {
    Ok(match v {
        0 => OtaState::Idle,
        1 => OtaState::Downloading,
        2 => OtaState::Downloaded,
        3 => OtaState::Updating,
        _ => return Err(corrupt("LwM2M state")),
    })
}

pub(crate) fn update_result(v: i64) -> StoreResult<UpdateResult> {
    use UpdateResult::*;
    const ALL: [UpdateResult; 12] = [
        Initial,
        Success,
        NotEnoughFlash,
        OutOfRam,
        ConnectionLost,
        IntegrityFailure,
        UnsupportedPackage,
        InvalidUri,
        UpdateFailed,
        UnsupportedProtocol,
        Cancelled,
        Deferred,
    ];
    usize::try_from(v)
        .ok()
        .and_then(|i| ALL.get(i).copied())
        .ok_or_else(|| corrupt("LwM2M result"))
}

pub(crate) fn version_of(major: i64, minor: i64, patch: i64) -> StoreResult<FirmwareVersion> {
    Ok(FirmwareVersion {
        major: narrow(major, "version")?,
        minor: narrow(minor, "version")?,
        patch: narrow(patch, "version")?,
    })
}
