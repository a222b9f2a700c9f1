//! Reading the stored publishes page by page, optionally for one device: what `ota-cloud
//! events` prints and `GET /api/v1/publishes` answers.
//!
//! Built on [`Store::publishes_since`] (the store keeps publishes in one log, ids in commit
//! order); a device filter scans that log, at most [`SCAN_LIMIT`] publishes per call, and
//! says where it stopped ([`Page::next_after`]) so the caller continues from there.

use cloud_proto::DeviceId;
use serde_json::{json, Value};

use crate::store::{PublishId, Store, StoreError, StoredPublish};

/// Most publishes one [`page`] call reads from the store when filtering by device.
pub const SCAN_LIMIT: usize = 10_000;

/// Most publishes one [`page`] call returns.
pub const MAX_LIMIT: usize = 1_000;

/// One page of publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The publishes, oldest first.
    pub publishes: Vec<StoredPublish>,
    /// Where the next page starts: the last publish id read (matching the filter or not), or
    /// the `after` asked for when nothing newer is stored.
    pub next_after: PublishId,
}

/// Up to `limit` (at most [`MAX_LIMIT`]) publishes with an id above `after`, oldest first, of
/// `device` only if given. Without a device it is one store read; with one it reads pages of
/// the log until `limit` matched, the log ended or [`SCAN_LIMIT`] publishes were read.
///
/// Errors: the store's. Cost: one read of `limit` rows without a device; up to
/// [`SCAN_LIMIT`] rows with one.
pub async fn page<S: Store>(
    store: &S,
    after: PublishId,
    device: Option<DeviceId>,
    limit: usize,
) -> Result<Page, StoreError> {
    page_scanning(store, after, device, limit, SCAN_LIMIT).await
}

/// [`page`] with another bound on the publishes read when filtering by device (at least 1).
///
/// Errors: the store's. Cost: up to `scan` rows read with a device.
pub async fn page_scanning<S: Store>(
    store: &S,
    after: PublishId,
    device: Option<DeviceId>,
    limit: usize,
    scan: usize,
) -> Result<Page, StoreError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let scan = scan.max(1);
    let Some(device) = device else {
        let publishes = store.publishes_since(after, limit).await?;
        let next_after = publishes.last().map_or(after, |p| p.id);
        return Ok(Page {
            publishes,
            next_after,
        });
    };
    let mut out = Vec::new();
    let mut cursor = after;
    let mut scanned = 0;
    while out.len() < limit && scanned < scan {
        let asked = MAX_LIMIT.min(scan - scanned);
        let batch = store.publishes_since(cursor, asked).await?;
        let Some(last) = batch.last() else {
            break;
        };
        scanned += batch.len();
        let full = batch.len() == asked;
        cursor = last.id;
        for p in batch {
            if p.device == device {
                out.push(p);
                if out.len() == limit {
                    // Stop right after the last one returned: the rest is the next page's.
                    cursor = out[limit - 1].id;
                    break;
                }
            }
        }
        if !full {
            break;
        }
    }
    Ok(Page {
        publishes: out,
        next_after: cursor,
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
