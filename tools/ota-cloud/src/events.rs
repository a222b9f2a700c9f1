//! Reading the stored publishes page by page, optionally for one device: what `ota-cloud
//! events` prints and `GET /api/v1/publishes` answers.
//!
//! Built on [`Store::publishes_since`] (the store keeps publishes in one log, ids in commit
//! order) and, for one device, [`Store::device_publishes`] (a range of the index on
//! (device, id)): either way one store read of at most `limit` rows per page.

use cloud_proto::DeviceId;
use serde_json::{json, Value};

use crate::store::{PublishId, Store, StoreError, StoredPublish};

/// Most publishes one [`page`] call returns.
pub const MAX_LIMIT: usize = 1_000;

/// One page of publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The publishes, oldest first.
    pub publishes: Vec<StoredPublish>,
    /// Where the next page starts: the last publish id returned, or the `after` asked for
    /// when nothing newer is stored (for the device, if given).
    pub next_after: PublishId,
}

/// Up to `limit` (1 to [`MAX_LIMIT`]) publishes with an id above `after`, oldest first, of
/// `device` only if given.
///
/// Errors: the store's. Cost: one store read of at most `limit` rows (with a device, through
/// its index: the other devices' publishes are not read).
pub async fn page<S: Store>(
    store: &S,
    after: PublishId,
    device: Option<DeviceId>,
    limit: usize,
) -> Result<Page, StoreError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let publishes = match device {
        Some(d) => store.device_publishes(d, after, limit).await?,
        None => store.publishes_since(after, limit).await?,
    };
    let next_after = publishes.last().map_or(after, |p| p.id);
    Ok(Page {
        publishes,
        next_after,
    })
}

/// A publish as JSON: `{"id", "device", "counter", "topic", "received_ms", "data_hex"}`.
pub fn to_json(p: &StoredPublish) -> Value {
    json!({
        "id": p.id.0,
        "device": p.device.0,
        "counter": p.counter,
        "topic": p.topic,
        "received_ms": p.received_ms,
        "data_hex": hex::encode(&p.data),
    })
}

/// A publish as one line of text: `id device counter topic received_ms data_hex`, tab
/// separated (`-` for an empty payload).
pub fn to_line(p: &StoredPublish) -> String {
    let data = if p.data.is_empty() {
        "-".to_string()
    } else {
        hex::encode(&p.data)
    };
    format!(
        "{}\t{}\t{}\t{}\t{}\t{data}",
        p.id.0, p.device.0, p.counter, p.topic, p.received_ms
    )
}
