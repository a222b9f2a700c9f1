//! `ota-cloud rollout …` and `ota-cloud release list`: the operator's side of
//! [`ota_cloud::rollout`]. Every refusal is one line naming the cause (unknown release,
//! illegal transition…), and nothing was changed.

use anyhow::{anyhow, bail, Result};
use clap::{ArgGroup, Subcommand};
use cloud_proto::DeviceId;
use ota_cloud::release::digest_hex;
use ota_cloud::rollout::ErrorThreshold;
use ota_cloud::{
    NewRollout, ProductId, ReleaseDigest, ReleaseId, Rollout, RolloutChange, RolloutId,
    RolloutState, Share, Store, StoreError, Target,
};

#[derive(Subcommand)]
pub(crate) enum RolloutCmd {
    /// Starts a rollout of a release; prints its id. Exactly one of --device, --group,
    /// --product.
    #[command(group(ArgGroup::new("target").required(true).args(["device", "group", "product"])))]
    Start {
        /// The release: its id (`release list`) or its SHA-256 (64 hex digits).
        #[arg(long)]
        release: String,
        /// Target one device.
        #[arg(long)]
        device: Option<u32>,
        /// Target the devices with this tag.
        #[arg(long)]
        group: Option<String>,
        /// Target every device of this product (the release's).
        #[arg(long)]
        product: Option<u32>,
        /// Staged: this percentage of the target (deterministic buckets; raise it later with
        /// `rollout percent`). Up to two decimals.
        #[arg(long, default_value = "100")]
        percent: String,
        /// Pause the rollout when more than this percentage of the devices that finished
        /// failed (needs --min-finished).
        #[arg(long, requires = "min_finished")]
        error_threshold: Option<String>,
        /// Devices that must have finished (succeeded or failed) before the threshold applies.
        #[arg(long, requires = "error_threshold")]
        min_finished: Option<u32>,
        /// Deferrals are honoured until this Unix time (seconds); after it the release is
        /// offered at every check-in and deferring devices count as overdue.
        #[arg(long, value_name = "UNIX_S")]
        defer_until: Option<u64>,
    },
    /// Lists rollouts (id, release, version, target, share, state).
    List {
        /// Only this product's.
        #[arg(long)]
        product: Option<u32>,
    },
    /// Shows a rollout and its progress (devices per state).
    Show {
        /// Rollout id.
        id: u32,
    },
    /// Raises a rollout's percentage (lowering is refused).
    Percent {
        /// Rollout id.
        id: u32,
        /// The new percentage.
        percent: String,
    },
    /// Pauses a running rollout: no new device is offered it; downloads in progress go on.
    Pause {
        /// Rollout id.
        id: u32,
    },
    /// Resumes a paused rollout (the error threshold counts afresh).
    Resume {
        /// Rollout id.
        id: u32,
    },
    /// Cancels a rollout for good: no offers; chunk requests get Nack(UnknownUpdate).
    Cancel {
        /// Rollout id.
        id: u32,
    },
}

fn share(s: &str) -> Result<Share> {
    Share::parse_percent(s)
        .ok_or_else(|| anyhow!("{s:?} is not a percentage from 0 to 100 (at most two decimals)"))
}

/// A store refusal as one line (the `Display` of [`StoreError`] names the cause).
fn refused(what: &str, e: StoreError) -> anyhow::Error {
    anyhow!("{what}: {e}")
}

async fn resolve_release<S: Store>(store: &S, arg: &str) -> Result<ReleaseId> {
    if arg.len() == 64 {
        let bytes = hex::decode(arg).map_err(|_| anyhow!("--release {arg}: not hex"))?;
        let digest = ReleaseDigest(bytes.try_into().map_err(|_| anyhow!("bad digest"))?);
        return store
            .release_id(digest)
            .await?
            .ok_or_else(|| anyhow!("unknown release {arg}"));
    }
    let id =
        ReleaseId(arg.parse().map_err(|_| {
            anyhow!("--release {arg}: expected an id or a SHA-256 (64 hex digits)")
        })?);
    match store.release_by_id(id).await? {
        Some(_) => Ok(id),
        None => bail!("unknown release {arg}"),
    }
}

fn target_text(t: &Target) -> String {
    match t {
        Target::Device(d) => format!("device {}", d.0),
        Target::Group(g) => format!("group {g}"),
        Target::Product => "product".into(),
    }
}

fn state_text(s: &RolloutState) -> String {
    match s {
        RolloutState::Paused(ota_cloud::rollout::PauseCause::Operator) => {
            "paused (operator)".into()
        }
        RolloutState::Paused(ota_cloud::rollout::PauseCause::ErrorThreshold {
            failed,
            finished,
        }) => format!("paused (error threshold: {failed} of {finished} finished failed)"),
        s => s.name().into(),
    }
}

fn line(r: &Rollout) -> String {
    format!(
        "{}\t{}\t{}.{}.{}\t{}\t{}\t{}\t{}",
        r.id.0,
        r.release.0,
        r.version.major,
        r.version.minor,
        r.version.patch,
        r.product.0,
        target_text(&r.target),
        r.share,
        state_text(&r.state)
    )
}

const HEADER: &str = "id\trelease\tversion\tproduct\ttarget\tshare\tstate";

/// `release list --product P`.
pub(crate) async fn release_list<S: Store>(store: &S, product: ProductId) -> Result<()> {
    if store.product(product).await?.is_none() {
        bail!("unknown product {}", product.0);
    }
    println!("id\tversion\tsha256\tsize\tcreated_ms");
    for (id, r) in store.releases(product).await? {
        println!(
            "{}\t{}.{}.{}\t{}\t{}\t{}",
            id.0,
            r.version.major,
            r.version.minor,
            r.version.patch,
            digest_hex(&r.digest),
            r.size,
            r.created_ms
        );
    }
    Ok(())
}

/// `rollout …`.
pub(crate) async fn run<S: Store>(store: &S, cmd: RolloutCmd, now_ms: u64) -> Result<()> {
    let change = |id: u32, c: RolloutChange| async move {
        let r = store
            .update_rollout(RolloutId(id), c)
            .await
            .map_err(|e| refused(&format!("rollout {id} not changed"), e))?;
        println!("{HEADER}\n{}", line(&r));
        Ok::<(), anyhow::Error>(())
    };
    match cmd {
        RolloutCmd::Start {
            release,
            device,
            group,
            product,
            percent,
            error_threshold,
            min_finished,
            defer_until,
        } => {
            let id = resolve_release(store, &release).await?;
            let target = match (device, group, product) {
                (Some(d), None, None) => Target::Device(DeviceId(d)),
                (None, Some(g), None) => Target::Group(g),
                (None, None, Some(p)) => {
                    let rel = store
                        .release_by_id(id)
                        .await?
                        .ok_or_else(|| anyhow!("unknown release {release}"))?;
                    if rel.product.0 != p {
                        bail!("release {} is of product {}, not {p}", id.0, rel.product.0);
                    }
                    Target::Product
                }
                _ => bail!("give exactly one of --device, --group, --product"),
            };
            let error_threshold = match (error_threshold, min_finished) {
                (Some(t), Some(min)) => Some(ErrorThreshold {
                    max_failed: share(&t)?,
                    min_finished: min,
                }),
                _ => None,
            };
            let defer_until_ms = defer_until
                .map(|s| {
                    s.checked_mul(1000)
                        .ok_or_else(|| anyhow!("--defer-until too large"))
                })
                .transpose()?;
            let r = store
                .add_rollout(NewRollout {
                    release: id,
                    target,
                    share: share(&percent)?,
                    error_threshold,
                    defer_until_ms,
                    created_ms: now_ms,
                })
                .await
                .map_err(|e| refused("rollout not started", e))?;
            println!("{}", r.0);
        }
        RolloutCmd::List { product } => {
            println!("{HEADER}");
            for r in store.rollouts(product.map(ProductId)).await? {
                println!("{}", line(&r));
            }
        }
        RolloutCmd::Show { id } => {
            let r = store
                .rollout(RolloutId(id))
                .await?
                .ok_or_else(|| anyhow!("unknown rollout {id}"))?;
            let p = store
                .rollout_progress(RolloutId(id), now_ms)
                .await?
                .ok_or_else(|| anyhow!("unknown rollout {id}"))?;
            println!(
                "rollout {}\nrelease {} version {}.{}.{}\nproduct {}\ntarget {}\nshare {}\nstate {}",
                r.id.0,
                r.release.0,
                r.version.major,
                r.version.minor,
                r.version.patch,
                r.product.0,
                target_text(&r.target),
                r.share,
                state_text(&r.state)
            );
            match r.error_threshold {
                Some(t) => println!(
                    "error threshold {} after {} finished",
                    t.max_failed, t.min_finished
                ),
                None => println!("error threshold none"),
            }
            match r.defer_until_ms {
                Some(ms) => println!("defer until {} s", ms / 1000),
                None => println!("defer until always"),
            }
            println!(
                "targeted {}\nnot offered {}\noffered {}\ndeferred {}\noverdue {}\ndownloading {}\ndownloaded {}\nupdating {}\nsucceeded {}\nfailed {}\ndeclined {}",
                p.targeted,
                p.not_offered,
                p.offered,
                p.deferred,
                p.overdue,
                p.downloading,
                p.downloaded,
                p.updating,
                p.succeeded,
                p.failed,
                p.declined
            );
        }
        RolloutCmd::Percent { id, percent } => {
            change(id, RolloutChange::Share(share(&percent)?)).await?
        }
        RolloutCmd::Pause { id } => change(id, RolloutChange::Pause).await?,
        RolloutCmd::Resume { id } => change(id, RolloutChange::Resume).await?,
        RolloutCmd::Cancel { id } => change(id, RolloutChange::Cancel).await?,
    }
    Ok(())
}
