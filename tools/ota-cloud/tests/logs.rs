//! Structured logs: refused frames are logged with their reason and device, once per interval
//! per device with the count suppressed in between; no key material in any line. Refused
//! console logins likewise, once per interval. (Here rather than in `tests/console.rs`: a
//! binary whose other tests log with no subscriber can leave `tracing`'s per-callsite interest
//! cached as "never" while this thread's subscriber would want the event.)

mod common;
mod fixture;

use std::io::Write;
use std::sync::{Arc, Mutex};

use cloud_proto::{DeviceId, Goodbye, Up};
use fixture::*;
use ota_cloud::logging::{DropLog, RejectLimiter};
use ota_cloud::server::Dropped;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn refusals_are_logged_once_per_interval_per_device() {
    let out = Captured::default();
    let w = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let fx = Fx::with_drop_log(Some(DropLog::new(RejectLimiter::new(60_000, 100)))).await;
        let mut a = fx.device(0x11).await;
        let mut b = fx.device(0x22).await;
        // Each bad frame on a fresh wake (its endpoint never hears an answer).
        let tampered = |dev: &mut common::Device| {
            let mut f = dev.seal(&mut dev.wake(), &Up::Goodbye(Goodbye { sleep_s: 60 }));
            let last = f.len() - 1;
            f[last] ^= 1;
            f
        };
        // 100 bad frames from A within the interval: one line.
        for _ in 0..100 {
            let f = tampered(&mut a);
            assert!(matches!(
                fx.frame(&mut a.wake(), &f).await,
                Err(Dropped::Frame(_))
            ));
            fx.advance(100);
        }
        // B is not held back by A.
        let f = tampered(&mut b);
        assert!(fx.frame(&mut b.wake(), &f).await.is_err());
        // An interval after A's line: logged again, with the 99 it held back.
        fx.advance(60_000);
        let f = tampered(&mut a);
        assert!(fx.frame(&mut a.wake(), &f).await.is_err());
        // An unknown device: its own line, with its id.
        let mut ghost = common::Device::new(DeviceId(4242), [0x33; 32]);
        let mut eg = ghost.wake();
        let f = ghost.seal(&mut eg, &Up::Goodbye(Goodbye { sleep_s: 1 }));
        assert!(matches!(
            fx.frame(&mut eg, &f).await,
            Err(Dropped::UnknownDevice(_))
        ));
        assert_eq!(fx.server.drops().frame, 102);
    });
    let lines = out.lines();
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("frame refused"))
        .collect();
    assert_eq!(refused.len(), 4, "{lines:#?}");
    let (a, b) = (DeviceId(1), DeviceId(2));
    assert!(
        refused[0].contains(&format!("device={}", a.0)),
        "{}",
        refused[0]
    );
    assert!(refused[0].contains("reason=\"frame\""), "{}", refused[0]);
    assert!(refused[0].contains("suppressed=0"), "{}", refused[0]);
    assert!(
        refused[1].contains(&format!("device={}", b.0)),
        "{}",
        refused[1]
    );
    assert!(
        refused[2].contains(&format!("device={}", a.0)),
        "{}",
        refused[2]
    );
    assert!(refused[2].contains("suppressed=99"), "{}", refused[2]);
    assert!(refused[3].contains("device=4242"), "{}", refused[3]);
    assert!(
        refused[3].contains("reason=\"unknown_device\""),
        "{}",
        refused[3]
    );
    assert!(refused.iter().all(|l| l.contains("WARN")));
    for key in [[0x11u8; 32], [0x22; 32], [0x33; 32]] {
        let k = hex::encode(key);
        assert!(
            lines.iter().all(|l| !l.contains(&k[..16])),
            "key in the log"
        );
    }
}

/// One urlencoded `POST /login` with `token`: the status.
async fn login_with<S: ota_cloud::Store>(fx: &Fx<S>, token: &str) -> axum::http::StatusCode {
    use tower::ServiceExt as _;
    let req = axum::http::Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(format!("token={token}")))
        .unwrap();
    fx.app.clone().oneshot(req).await.unwrap().status()
}

/// 200 wrong tokens within a minute are one log line; the next one a minute later says how
/// many were held back; no line carries what was tried.
#[test]
fn failed_logins_are_logged_once_per_interval() {
    let out = Captured::default();
    let w = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let fx = Fx::new().await;
        for i in 0..200 {
            let status = login_with(&fx, &format!("guess{i}")).await;
            assert_eq!(status, axum::http::StatusCode::UNAUTHORIZED);
            fx.advance(100);
        }
        fx.advance(60_000);
        let status = login_with(&fx, "guess-late").await;
        assert_eq!(status, axum::http::StatusCode::UNAUTHORIZED);
        // The right token is still let in, and logged as a login.
        let status = login_with(&fx, TOKEN).await;
        assert_eq!(status, axum::http::StatusCode::SEE_OTHER);
    });
    let lines = out.lines();
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("console login refused"))
        .collect();
    assert_eq!(refused.len(), 2, "{lines:#?}");
    assert!(refused[0].contains("suppressed=0"), "{}", refused[0]);
    assert!(refused[1].contains("suppressed=199"), "{}", refused[1]);
    assert!(refused.iter().all(|l| l.contains("WARN")));
    assert!(
        lines.iter().all(|l| !l.contains("guess")),
        "a tried token in the log: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("console login") && !l.contains("refused")),
        "{lines:#?}"
    );
}
