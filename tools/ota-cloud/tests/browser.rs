//! The console (`/` on the admin address) in a real browser: Debian's `chromium` driven by
//! `chromedriver` over WebDriver (`fantoccini`), headless at a fixed window size, against the
//! `ota-cloud` binary and a simulated fleet of 50 devices that speak the real protocol over
//! UDP and keep their firmware with ota-core on simulated flash (`browser/fleet.rs`).
//!
//! Each test starts its own chromedriver, server and fleet. Without `chromedriver` (Debian's
//! `chromium-driver`; `.ci/run` installs it) each test prints "skipped: chromium-driver not
//! installed" and passes. `OTA_CLOUD_BROWSER=skip` skips them too: `scripts/ci.sh` runs them in
//! their own step first and sets it for the workspace run, so they do not run twice.
//! `OTA_CONSOLE_SCREENSHOTS=DIR` saves the README's screenshots there
//! (`scripts/console-screenshots.sh`).
//!
//! The page is never waited on with a fixed sleep: every wait is bounded (`harness::WAIT`) and
//! polls for what it expects, and the live numbers are read after the page's own refresh
//! counter (`document.body.dataset.liveTick`) moved. Element ids: `/work/contract-13.md`, as
//! summed up in `src/console`'s docs.

// The crate root's modules live beside it, in tests/browser/ (not test targets of their own).
#[path = "browser/fleet.rs"]
mod fleet;
#[path = "browser/harness.rs"]
mod harness;

use std::collections::BTreeSet;

use cloud_proto::DeviceId;
use fantoccini::{Client, Locator};
use fleet::{Did, Fleet, Signer, SimDevice};
use harness::*;
use ota_cloud::keyfile::DeviceKeyFile;
use serde_json::{json, Value};

/// Devices in the simulated fleet.
const DEVICES: u32 = 50;

/// Every fifth device is in the "lab" group and runs 1.1.0; the others are "field" on 1.0.0.
fn group_of(id: u32) -> (&'static str, (u16, u16, u16)) {
    if id.is_multiple_of(5) {
        ("lab", (1, 1, 0))
    } else {
        ("field", (1, 0, 0))
    }
}

/// The battery voltage device `id` reports (mV), 3.3 to 4.2 V.
fn battery_of(id: u32) -> u16 {
    3300 + (id * 73 % 900) as u16
}

/// One test's world: the server, its fleet (checked in once), the browser.
struct World {
    server: ServerProc,
    fleet: Fleet,
    signer: Signer,
    product: u64,
    c: Client,
    // Dropped after the client: the session's browser goes with it.
    _driver: Driver,
    // Dropped last: the next test's browser starts once this one is gone.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

/// One browser test at a time: several Chromium instances at once on a small CI machine
/// would only make each page slower to answer.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The whole set-up, or `None` (printed) when the tests are skipped.
async fn world() -> Option<World> {
    if std::env::var("OTA_CLOUD_BROWSER").as_deref() == Ok("skip") {
        println!("skipped: OTA_CLOUD_BROWSER=skip (scripts/ci.sh runs these in their own step)");
        return None;
    }
    let Some(bin) = chromedriver_path() else {
        println!("skipped: chromium-driver not installed");
        return None;
    };
    let serial = SERIAL.lock().await;
    let driver = Driver::start(&bin).await;
    let (server, fleet, signer, product) = provisioned().await;
    let c = driver.browser().await;
    Some(World {
        server,
        fleet,
        signer,
        product,
        c,
        _driver: driver,
        _serial: serial,
    })
}

/// The server with a product trusting `signer`, its 50 devices provisioned through the admin
/// API, and the fleet checked in once (battery, a publish) before anyone looks.
async fn provisioned() -> (ServerProc, Fleet, Signer, u64) {
    let server = ServerProc::start();
    let signer = Signer::generate();
    let product = server
        .api_ok(
            "POST",
            "/api/v1/products",
            Some(&json!({
                "name": "tracker",
                "hardware_id": fleet::HARDWARE,
                "release_keys": [signer.public_pem()],
            })),
            201,
        )
        .await["id"]
        .as_u64()
        .expect("product id");
    let mut devices = Vec::new();
    for i in 1..=DEVICES {
        let (group, version) = group_of(i);
        let v = server
            .api_ok(
                "POST",
                "/api/v1/devices",
                Some(&json!({ "product": product, "tags": [group], "id": i })),
                201,
            )
            .await;
        let kf =
            DeviceKeyFile::parse(v["key_file"].as_str().expect("key_file")).expect("a key file");
        assert_eq!(kf.device, DeviceId(i));
        let battery = battery_of(i);
        devices.push(SimDevice::new(
            kf.device,
            *kf.root_key.expose(),
            &signer,
            version,
            battery,
        ));
    }
    let mut fleet = Fleet {
        server: server.udp,
        devices,
    };
    let did = fleet.wake_all().await.expect("first wake");
    assert!(did.iter().all(|(_, d)| *d == Did::CheckedIn), "{did:?}");
    (server, fleet, signer, product)
}

fn ids_that(did: &[(DeviceId, Did)], f: impl Fn(&Did) -> bool) -> BTreeSet<u32> {
    did.iter()
        .filter(|(_, d)| f(d))
        .map(|(id, _)| id.0)
        .collect()
}

/// Uploads `container` and starts a rollout of it with `spec` (the JSON body less its
/// release) through the admin API; returns the rollout's id.
async fn api_rollout(server: &ServerProc, product: u64, container: Vec<u8>, spec: Value) -> u64 {
    let (s, rel) = server
        .api_bytes(
            "POST",
            &format!("/api/v1/products/{product}/releases"),
            container,
        )
        .await;
    assert_eq!(s, 201, "{rel}");
    let mut body = spec;
    body["release"] = rel["id"].clone();
    server
        .api_ok("POST", "/api/v1/rollouts", Some(&body), 201)
        .await["id"]
        .as_u64()
        .expect("rollout id")
}

/// Makes the lab devices (every fifth) reject 2.0.0 on trial, starts 2.0.0 for the lab group
/// at 100 % with an error threshold of 20 % after 2 finished, and wakes the fleet until they
/// have reported it (4 wakes) and rolled back (a 5th). Returns the rollout and the lab's ids.
async fn failing_lab_rollout(
    server: &ServerProc,
    fleet: &mut Fleet,
    signer: &Signer,
    product: u64,
) -> (u64, BTreeSet<u32>) {
    let lab: BTreeSet<u32> = (1..=DEVICES).filter(|i| i.is_multiple_of(5)).collect();
    for d in fleet.devices.iter_mut() {
        d.fails_self_check = lab.contains(&d.id.0);
    }
    let v2 = signer.container((2, 0, 0), &fleet::image((2, 0, 0)));
    let spec = json!({
        "target": {"group": "lab"},
        "error_threshold": {"percent": "20", "min_finished": 2},
    });
    let rollout = api_rollout(server, product, v2.encode(), spec).await;
    let steps = [
        (1, "Downloading"),
        (2, "Downloading"),
        (3, "Downloaded"),
        (4, "TrialFailed"),
    ];
    for (n, want) in steps {
        let did = fleet.wake_all().await.expect("wake");
        let got = ids_that(&did, |d| format!("{d:?}").starts_with(want));
        assert_eq!(got, lab, "wake {n}: {want}: {did:?}");
    }
    // Booted back on 1.1.0 by the bootloader; nothing offered again.
    let did = fleet.wake_all().await.expect("wake 5");
    assert!(did.iter().all(|(_, d)| *d == Did::CheckedIn), "{did:?}");
    (rollout, lab)
}

/// The simulated fleet on its own (no browser: runs everywhere): a release offered to the lab
/// group through the JSON API is downloaded over three wakes, installed by the bootloader and
/// confirmed at the fourth, and the server's rollout progress follows each step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_fleet_takes_a_rollout_through_the_api() {
    let (server, mut fleet, signer, product) = provisioned().await;
    let v2 = signer.container((2, 0, 0), &fleet::image((2, 0, 0)));
    let (s, rel) = server
        .api_bytes(
            "POST",
            &format!("/api/v1/products/{product}/releases"),
            v2.encode(),
        )
        .await;
    assert_eq!(s, 201, "{rel}");
    let r = server
        .api_ok(
            "POST",
            "/api/v1/rollouts",
            Some(&json!({ "release": rel["id"], "target": {"group": "lab"} })),
            201,
        )
        .await;
    let path = format!("/api/v1/rollouts/{}", r["id"]);
    let lab: BTreeSet<u32> = (1..=DEVICES).filter(|i| i.is_multiple_of(5)).collect();
    let progress = |phase: &'static str| {
        let (server, path) = (&server, &path);
        async move { server.api_ok("GET", path, None, 200).await["progress"][phase].clone() }
    };
    assert_eq!(progress("targeted").await, json!(lab.len()));

    for n in 1..=2 {
        let did = fleet.wake_all().await.expect("wake 1, 2");
        assert_eq!(
            ids_that(&did, |d| matches!(d, Did::Downloading { .. })),
            lab,
            "wake {n}: {did:?}"
        );
        assert_eq!(progress("downloading").await, json!(lab.len()));
    }
    let did = fleet.wake_all().await.expect("wake 3");
    assert_eq!(
        ids_that(&did, |d| matches!(d, Did::Downloaded { .. })),
        lab,
        "{did:?}"
    );
    assert_eq!(progress("downloaded").await, json!(lab.len()));
    let did = fleet.wake_all().await.expect("wake 4");
    assert_eq!(
        ids_that(&did, |d| matches!(d, Did::Confirmed { .. })),
        lab,
        "{did:?}"
    );
    assert_eq!(progress("succeeded").await, json!(lab.len()));
    let v2 = cloud_proto::FirmwareVersion {
        major: 2,
        minor: 0,
        patch: 0,
    };
    for d in fleet.devices.iter_mut() {
        let (v, trial) = d.running();
        assert!(!trial, "device {} still on trial", d.id.0);
        assert_eq!(
            v == v2,
            lab.contains(&d.id.0),
            "device {} runs {v:?}",
            d.id.0
        );
    }
    // Once confirmed, nothing more is offered.
    let did = fleet.wake_all().await.expect("wake 5");
    assert!(did.iter().all(|(_, d)| *d == Did::CheckedIn), "{did:?}");
    let dev = server.api_ok("GET", "/api/v1/devices/5", None, 200).await;
    assert_eq!(dev["status"]["wakes"], json!(6), "{dev}");
}

/// The simulated fleet on its own: devices whose self-check rejects the trial image report
/// the failure (LwM2M 8) and roll back; the error threshold pauses the rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_fleet_rejects_a_bad_release_and_the_threshold_pauses_it() {
    let (server, mut fleet, signer, product) = provisioned().await;
    let (rollout, lab) = failing_lab_rollout(&server, &mut fleet, &signer, product).await;
    let r = server
        .api_ok("GET", &format!("/api/v1/rollouts/{rollout}"), None, 200)
        .await;
    assert_eq!(r["state"], json!("paused"), "{r}");
    assert_eq!(r["pause"]["cause"], json!("error_threshold"), "{r}");
    assert_eq!(r["progress"]["failed"], json!(lab.len()), "{r}");
    let v1_1 = cloud_proto::FirmwareVersion {
        major: 1,
        minor: 1,
        patch: 0,
    };
    for d in fleet.devices.iter_mut().filter(|d| lab.contains(&d.id.0)) {
        assert_eq!(
            d.running(),
            (v1_1, false),
            "device {} after the revert",
            d.id.0
        );
    }
}

impl World {
    async fn goto(&self, path: &str) {
        self.c
            .goto(&format!("{}{path}", self.server.base()))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    }

    /// Types `token` into the login form and submits it.
    async fn submit_login(&self, token: &str) {
        self.goto("/login").await;
        let input = self
            .c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("form#login-form input#token[name=token]"))
            .await
            .expect("the login form: form#login-form with input#token[name=token]");
        input.clear().await.expect("clear");
        input.send_keys(token).await.expect("type the token");
        self.c
            .find(Locator::Css("button#login-submit"))
            .await
            .expect("button#login-submit")
            .click()
            .await
            .expect("submit");
    }

    async fn login(&self) {
        self.submit_login(&self.server.token).await;
        let c = &self.c;
        wait_until("/fleet after logging in", || async move {
            let u = url(c).await;
            if u.ends_with("/fleet") && c.find(Locator::Css("nav#nav")).await.is_ok() {
                Ok(())
            } else {
                Err(u)
            }
        })
        .await;
    }

    /// Device id → `data-state` of its `td.ota-state`, from the fleet table as shown.
    async fn fleet_states(&self) -> Value {
        js(
            &self.c,
            r#"const m = {};
               for (const r of document.querySelectorAll('table#devices tr[data-device-id]')) {
                 const s = r.querySelector('td.ota-state');
                 m[r.dataset.deviceId] = s ? s.dataset.state : null;
               }
               return m;"#,
        )
        .await
    }

    /// Ids of the rows whose state is `state`.
    async fn ids_in(&self, state: &str) -> BTreeSet<u32> {
        let m = self.fleet_states().await;
        m.as_object()
            .map(|o| {
                o.iter()
                    .filter(|(_, v)| v.as_str() == Some(state))
                    .filter_map(|(k, _)| k.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits (live refresh, no reload) until the rows in `state` are exactly `ids`.
    async fn wait_fleet_state(&self, state: &str, ids: &BTreeSet<u32>) {
        wait_live_refresh(&self.c, state).await;
        let expected = format!("devices {ids:?} shown as {state}");
        wait_until(&expected, || async {
            let got = self.ids_in(state).await;
            if &got == ids {
                Ok(())
            } else {
                Err(format!(
                    "{state}: {got:?}; all rows: {}",
                    self.fleet_states().await
                ))
            }
        })
        .await;
    }

    /// Waits until the fleet shows exactly the rows `ids` (the others hidden) and
    /// `#device-count` says how many.
    async fn wait_shown(&self, ids: &BTreeSet<u32>, what: &str) {
        let expected = format!("{} rows shown for {what}", ids.len());
        wait_until(&expected, || async {
            let v = js(
                &self.c,
                "return [document.getElementById('device-count')?.textContent, \
                   [...document.querySelectorAll('table#devices tr[data-device-id]')]\
                   .filter(r => r.offsetParent !== null).map(r => +r.dataset.deviceId)];",
            )
            .await;
            let shown: BTreeSet<u32> = v[1]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_u64().map(|n| n as u32))
                        .collect()
                })
                .unwrap_or_default();
            let count = v[0].as_str().unwrap_or("").trim().to_string();
            if &shown == ids && count == ids.len().to_string() {
                Ok(())
            } else {
                Err(format!("#device-count {count:?}, rows {shown:?}"))
            }
        })
        .await
    }

    /// Chooses `value` in `select#id` (by option value or, failing that, by option text
    /// containing it) and fires `change`.
    async fn select(&self, id: &str, value: &str) {
        let ok = self
            .c
            .execute(
                r#"const [id, v] = arguments;
                   const s = document.getElementById(id);
                   if (!s) return 'no select#' + id;
                   const o = [...s.options].find(o => o.value === v)
                          || [...s.options].find(o => o.text.includes(v));
                   if (!o) return 'select#' + id + ' has no option ' + v + ': '
                          + [...s.options].map(o => o.value + '=' + o.text).join(', ');
                   s.value = o.value;
                   s.dispatchEvent(new Event('input', {bubbles: true}));
                   s.dispatchEvent(new Event('change', {bubbles: true}));
                   return 'ok';"#,
                vec![json!(id), json!(value)],
            )
            .await
            .expect("select script");
        assert_eq!(ok, json!("ok"), "select {id} = {value}");
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.c.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(_) => panic!("no {css} at {}", url(&self.c).await),
        }
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        e.clear().await.expect("clear");
        e.send_keys(value).await.expect("type");
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Waits for `css` to exist and show a text containing `want`; returns the text.
    async fn wait_text(&self, css: &str, want: &str) -> String {
        let expected = format!("{css} showing {want:?}");
        wait_until(&expected, || async {
            match text(&self.c, css).await {
                Ok(t) if t.contains(want) => Ok(t),
                Ok(t) => Err(format!("{css}: {t:?}")),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Uploads `bytes` as a container file through `/releases`.
    async fn upload(&self, name: &str, bytes: &[u8]) {
        let path = self.server.dir.path().join(name);
        std::fs::write(&path, bytes).expect("container file");
        self.goto("/releases").await;
        let input = self
            .c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(
                "form#upload-form input#upload-file[type=file][name=container]",
            ))
            .await
            .expect("form#upload-form with input#upload-file");
        input
            .send_keys(&path.to_string_lossy())
            .await
            .expect("choose the file");
        self.click("button#upload-submit").await;
    }

    /// Starts a rollout of `version` to the product at `percent` through `/rollouts`;
    /// returns its id (the newest rollout, read through the API).
    async fn start_rollout(&self, version: &str, percent: &str) -> u64 {
        self.goto("/rollouts").await;
        self.c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("form#rollout-form"))
            .await
            .expect("form#rollout-form");
        self.select("rollout-release", version).await;
        self.select("rollout-target-kind", "product").await;
        self.fill("input#rollout-target", &self.product.to_string())
            .await;
        self.fill("input#rollout-percent", percent).await;
        let before = self.rollout_ids().await;
        self.click("button#rollout-submit").await;
        wait_until("a new rollout in the API after the form", || async {
            let now = self.rollout_ids().await;
            match now.difference(&before).next() {
                Some(id) => Ok(*id),
                None => Err(format!("rollouts {now:?}; page {}", url(&self.c).await)),
            }
        })
        .await
    }

    /// The `progress` element of device `id`'s OTA state cell: (value, max).
    async fn progress_bar(&self, id: u32) -> (f64, f64) {
        let bar = js(
            &self.c,
            &format!(
                "const p = document.querySelector(\
                   'tr[data-device-id=\"{id}\"] td.ota-state progress');\
                 return p ? [p.value, p.max] : null;"
            ),
        )
        .await;
        match (bar[0].as_f64(), bar[1].as_f64()) {
            (Some(v), Some(m)) if m > 0.0 => (v, m),
            _ => panic!("device {id} is downloading: no progress element in its row ({bar})"),
        }
    }

    async fn rollout_ids(&self) -> BTreeSet<u64> {
        let v = self
            .server
            .api_ok("GET", "/api/v1/rollouts", None, 200)
            .await;
        v["rollouts"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["id"].as_u64()).collect())
            .unwrap_or_default()
    }

    async fn rollout(&self, id: u64) -> Value {
        self.server
            .api_ok("GET", &format!("/api/v1/rollouts/{id}"), None, 200)
            .await
    }
}

/// A container whose manifest signature has one byte flipped: the framing is intact, only
/// the signature check can catch it.
fn tampered(c: &ota_tool::Container) -> Vec<u8> {
    let mut c = ota_tool::Container {
        manifest: c.manifest.clone(),
        image: c.image.clone(),
    };
    let sig = c.manifest.len() - 10; // inside the 64-byte Ed25519 signature at the end
    c.manifest[sig] ^= 0x01;
    c.encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refuses_a_wrong_token_and_shows_the_fleet_of_50() {
    let Some(w) = world().await else { return };
    let c = &w.c;

    // Without a session, `/` leads to the login page.
    w.goto("/").await;
    wait_until("/ to redirect to /login without a session", || async {
        let u = url(c).await;
        if u.contains("/login") {
            Ok(())
        } else {
            Err(u)
        }
    })
    .await;

    // A wrong token: refused, no session.
    w.submit_login("not-the-token").await;
    w.wait_text("#login-error", "wrong token").await;
    assert!(
        url(c).await.contains("/login"),
        "still on the login page after a wrong token: {}",
        url(c).await
    );
    assert!(
        c.get_named_cookie("ota_session").await.is_err(),
        "a wrong token got a session cookie"
    );

    // The right one: the fleet.
    w.login().await;
    let cookie = c
        .get_named_cookie("ota_session")
        .await
        .expect("the ota_session cookie after logging in");
    assert_eq!(cookie.http_only(), Some(true), "ota_session: {cookie}");
    // (`cookie::SameSite` by its name: the cookie crate is fantoccini's, not ours.)
    assert_eq!(
        format!("{:?}", cookie.same_site()),
        "Some(Strict)",
        "ota_session: {cookie}"
    );
    let js_sees = js(c, "return document.cookie;").await;
    assert!(
        !js_sees.as_str().unwrap_or("").contains("ota_session"),
        "the page's script can read the session cookie: {js_sees}"
    );
    for css in [
        "a#nav-fleet",
        "a#nav-releases",
        "a#nav-rollouts",
        "button#logout",
    ] {
        c.find(Locator::Css(css))
            .await
            .unwrap_or_else(|_| panic!("no {css} on /fleet"));
    }
    w.wait_text("#device-count", &DEVICES.to_string()).await;
    let rows = js(
        c,
        "return [...document.querySelectorAll('table#devices tr[data-device-id]')]\
             .map(r => r.dataset.deviceId);",
    )
    .await;
    let ids: BTreeSet<u32> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|v| v.as_str()?.parse().ok())
        .collect();
    assert_eq!(ids, (1..=DEVICES).collect(), "fleet rows: {rows}");
    assert_eq!(w.ids_in("idle").await.len(), DEVICES as usize);

    // What one row shows: its version (confirmed), battery, a last check-in.
    let row = |id: u32, cell: &str| format!("tr[data-device-id=\"{id}\"] td.{cell}");
    let v = text(c, &row(5, "version")).await.expect("td.version");
    assert!(
        v.contains("1.1.0"),
        "device 5 runs 1.1.0; its row shows {v:?}"
    );
    c.find(Locator::Css(&format!(
        "{} span.confirmed",
        row(5, "version")
    )))
    .await
    .expect("device 5's version marked confirmed (span.confirmed)");
    let v = text(c, &row(7, "version")).await.expect("td.version");
    assert!(
        v.contains("1.0.0"),
        "device 7 runs 1.0.0; its row shows {v:?}"
    );
    let b = text(c, &row(7, "battery")).await.expect("td.battery");
    let mv = battery_of(7);
    let volts = format!("{:.2}", f64::from(mv) / 1000.0);
    assert!(
        b.contains(&mv.to_string()) || b.contains(&volts),
        "device 7 reported {mv} mV; its row shows {b:?}"
    );
    let seen = c
        .find(Locator::Css(&row(7, "last-seen")))
        .await
        .expect("td.last-seen");
    let title = seen.attr("title").await.expect("title").unwrap_or_default();
    assert!(
        title.starts_with("20") && title.contains('T'),
        "td.last-seen's title should be an ISO time, is {title:?}"
    );
    text(c, &row(7, "next-wake")).await.expect("td.next-wake");

    // The filters: by group (the lab's 10), by version (the same 10 run 1.1.0), by state,
    // and the search box (a device id), each narrowing the rows shown and #device-count.
    let lab: BTreeSet<u32> = (1..=DEVICES).filter(|i| i.is_multiple_of(5)).collect();
    w.select("filter-group", "lab").await;
    w.wait_shown(&lab, "the lab group filter").await;
    w.select("filter-group", "").await;
    w.select("filter-version", "1.1.0").await;
    w.wait_shown(&lab, "the 1.1.0 version filter").await;
    w.select("filter-version", "").await;
    w.select("filter-state", "downloading").await;
    w.wait_shown(&BTreeSet::new(), "the downloading state filter")
        .await;
    w.select("filter-state", "").await;
    w.fill("input#search", "42").await;
    w.wait_shown(&BTreeSet::from([42]), "a search for 42").await;
    w.fill("input#search", "").await;
    // (An emptied search box sends no input event to wait on: type and delete a space.)
    w.find("input#search")
        .await
        .send_keys(" \u{8}")
        .await
        .expect("type");
    w.wait_shown(&(1..=DEVICES).collect(), "no filter").await;

    // A device's page: its wake and its publish.
    w.goto("/devices/7").await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#device-summary"))
        .await
        .expect("#device-summary on /devices/7");
    let n = js(
        c,
        "return [document.querySelectorAll('#wakes .wake').length, \
                 document.querySelectorAll('#publishes .publish').length];",
    )
    .await;
    assert_eq!(
        n,
        json!([1, 1]),
        "device 7 woke once with one publish: [wakes, publishes]"
    );

    // Logging out ends the session.
    w.click("button#logout").await;
    wait_until("/login after logging out", || async {
        let u = url(c).await;
        if u.contains("/login") {
            Ok(())
        } else {
            Err(u)
        }
    })
    .await;
    w.goto("/fleet").await;
    let u = url(c).await;
    assert!(u.contains("/login"), "/fleet after logout shows {u}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_roll_out_at_ten_percent_watch_devices_confirm_and_pause() {
    let Some(mut w) = world().await else { return };
    w.login().await;
    let v2 = w.signer.container((2, 0, 0), &fleet::image((2, 0, 0)));

    // A tampered container: refused with the verifier's reason, nothing stored.
    let before = w.server.snapshot().await;
    let bad = w.signer.container((2, 1, 0), &fleet::image((2, 1, 0)));
    w.upload("tampered.ota", &tampered(&bad)).await;
    let why = w.wait_text("#upload-error", "signature").await;
    assert!(
        text(&w.c, "#upload-result").await.is_err(),
        "a refused upload also shows #upload-result"
    );
    assert_eq!(
        w.server.snapshot().await,
        before,
        "the refused upload ({why}) changed the store"
    );

    // The release, through the page.
    w.upload("fw-2.0.0.ota", &v2.encode()).await;
    w.wait_text("#upload-result", "2.0.0").await;
    let rel = w
        .server
        .api_ok(
            "GET",
            &format!("/api/v1/products/{}/releases", w.product),
            None,
            200,
        )
        .await;
    let rel = rel["releases"].as_array().expect("releases").clone();
    assert_eq!(rel.len(), 1, "{rel:?}");
    let release_id = rel[0]["id"].as_u64().expect("release id");
    w.c.find(Locator::Css(&format!(
        "table#releases tr[data-release-id=\"{release_id}\"]"
    )))
    .await
    .expect("the release's row in table#releases");

    // A rollout at 10 % of the product. Its share is a hash of the device id and a random
    // seed: 10 % of 50 devices is empty with probability 0.9^50 = 0.5 %; then it is cancelled
    // (through the page) and started again.
    let mut rollout = 0;
    let mut targeted = 0;
    for _ in 0..4 {
        rollout = w.start_rollout("2.0.0", "10").await;
        let r = w.rollout(rollout).await;
        assert_eq!(r["share_bp"], json!(1000), "{r}");
        assert_eq!(r["state"], json!("running"), "{r}");
        targeted = r["progress"]["targeted"].as_u64().expect("targeted");
        if targeted > 0 {
            break;
        }
        w.goto(&format!("/rollouts/{rollout}")).await;
        w.click("button#rollout-cancel").await;
        w.wait_text("#rollout-state", "cancelled").await;
    }
    assert!(
        (1..=15).contains(&targeted),
        "10 % of {DEVICES} devices: {targeted} targeted"
    );

    // Asleep, nobody has been offered anything yet. From here on the fleet page is never
    // reloaded: every change below arrives through its live refresh.
    w.goto("/fleet").await;
    w.wait_text("#device-count", &DEVICES.to_string()).await;
    assert_eq!(w.ids_in("idle").await.len(), DEVICES as usize);
    mark_page(&w.c).await;

    // Wake 1: the devices in the share take the offer and fetch a third of the image.
    let did = w.fleet.wake_all().await.expect("wake 1");
    let downloading = ids_that(&did, |d| matches!(d, Did::Downloading { .. }));
    assert_eq!(
        downloading.len() as u64,
        targeted,
        "devices that took the offer vs the rollout's targeted count: {did:?}"
    );
    assert!(
        did.iter()
            .all(|(_, d)| matches!(d, Did::CheckedIn | Did::Downloading { .. })),
        "{did:?}"
    );
    w.wait_fleet_state("downloading", &downloading).await;
    let first = *downloading.iter().next().expect("one");
    w.progress_bar(first).await;

    // Wake 2: their check-in reports a third done; they fetch another third.
    let did = w.fleet.wake_all().await.expect("wake 2");
    assert_eq!(
        ids_that(&did, |d| matches!(d, Did::Downloading { .. })),
        downloading,
        "{did:?}"
    );
    wait_live_refresh(&w.c, "after wake 2").await;
    assert_eq!(w.ids_in("downloading").await, downloading);
    let (value, max) = w.progress_bar(first).await;
    assert!(
        (0.3..0.37).contains(&(value / max)),
        "device {first} reported 8 of 24 chunks at its check-in; its bar shows {value} of {max}"
    );
    screenshot(&w.c, "console-fleet.png").await;
    assert_not_reloaded(&w.c, "the fleet from idle to downloading").await;

    // Wake 3: the rest, verified, marked for install (the bootloader installs it at wake 4).
    let did = w.fleet.wake_all().await.expect("wake 3");
    let downloaded: BTreeSet<u32> = did
        .iter()
        .filter(|(_, d)| matches!(d, Did::Downloaded { .. }))
        .map(|(id, _)| id.0)
        .collect();
    assert_eq!(downloaded, downloading, "{did:?}");
    wait_live_refresh(&w.c, "after wake 3").await;
    let states = w.fleet_states().await;
    for id in &downloaded {
        let s = states[id.to_string()].as_str().unwrap_or("");
        assert!(
            matches!(s, "downloaded" | "installing"),
            "device {id} downloaded and marked its image for install; the fleet shows {s:?}"
        );
    }

    // Wake 4: installed by the bootloader, booted on trial, checked in, confirmed.
    let did = w.fleet.wake_all().await.expect("wake 4");
    let confirmed: BTreeSet<u32> = did
        .iter()
        .filter(|(_, d)| matches!(d, Did::Confirmed { .. }))
        .map(|(id, _)| id.0)
        .collect();
    assert_eq!(confirmed, downloading, "{did:?}");
    w.wait_fleet_state("confirmed", &confirmed).await;
    assert_not_reloaded(&w.c, "the fleet from idle to confirmed").await;
    let v = text(&w.c, &format!("tr[data-device-id=\"{first}\"] td.version"))
        .await
        .expect("td.version");
    assert!(v.contains("2.0.0"), "device {first} runs 2.0.0 now: {v:?}");
    assert_eq!(
        w.ids_in("idle").await.len() as u64,
        u64::from(DEVICES) - targeted,
        "the devices outside the 10 % stay idle"
    );

    // The rollout's page: running, its counts, the adoption chart.
    w.goto(&format!("/rollouts/{rollout}")).await;
    w.wait_text("#rollout-state", "running").await;
    w.wait_text(
        "#rollout-counts [data-state=\"succeeded\"] .count",
        &targeted.to_string(),
    )
    .await;
    w.c.find(Locator::Css("#adoption-chart svg"))
        .await
        .expect("#adoption-chart svg");
    screenshot(&w.c, "console-rollout.png").await;

    // Pause: the page says so, the API agrees, and a wake brings no new offer.
    w.click("button#rollout-pause").await;
    w.wait_text("#rollout-state", "paused").await;
    let r = w.rollout(rollout).await;
    assert_eq!(r["state"], json!("paused"), "{r}");
    assert_eq!(r["pause"], json!({"cause": "operator"}), "{r}");
    // Resume comes back to running.
    w.click("button#rollout-resume").await;
    w.wait_text("#rollout-state", "running").await;
    w.click("button#rollout-pause").await;
    w.wait_text("#rollout-state", "paused").await;
    // Raised to 100 % while paused: nobody is offered anything until it resumes.
    w.fill("input#rollout-raise-percent", "100").await;
    w.click("button#rollout-raise-submit").await;
    wait_until("the rollout raised to 100 %", || async {
        let r = w.rollout(rollout).await;
        if r["share_bp"] == json!(10_000) {
            Ok(())
        } else {
            Err(format!("API: share_bp {}", r["share_bp"]))
        }
    })
    .await;
    w.wait_text("#rollout-state", "paused").await;
    let did = w.fleet.wake_all().await.expect("wake 5");
    assert!(
        did.iter().all(|(_, d)| *d == Did::CheckedIn),
        "a wake under a paused rollout: {did:?}"
    );

    // A device that updated: its page lists the update and its LwM2M result.
    w.goto(&format!("/devices/{first}")).await;
    w.c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#updates .update"))
        .await
        .expect("#updates .update on the device page");
    let u = text(&w.c, "#updates").await.expect("#updates");
    assert!(
        u.contains("2.0.0") && (u.to_lowercase().contains("success") || u.contains("(1)")),
        "device {first}'s update history should show 2.0.0 and result Success (1): {u:?}"
    );
    screenshot(&w.c, "console-device.png").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_devices_are_marked_red_and_the_auto_pause_shows_its_cause() {
    let Some(mut w) = world().await else { return };
    let (rollout, lab) = failing_lab_rollout(&w.server, &mut w.fleet, &w.signer, w.product).await;
    w.login().await;
    w.wait_text("#device-count", &DEVICES.to_string()).await;
    assert_eq!(w.ids_in("failed").await, lab, "{}", w.fleet_states().await);
    let red = js(
        &w.c,
        "return [...document.querySelectorAll('table#devices tr.failed[data-device-id]')]\
             .map(r => +r.dataset.deviceId);",
    )
    .await;
    let red: BTreeSet<u32> = red
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|v| v.as_u64().map(|n| n as u32))
        .collect();
    assert_eq!(red, lab, "rows with class failed (the red mark)");
    // Back on 1.1.0 after the revert.
    let v = text(&w.c, "tr[data-device-id=\"5\"] td.version")
        .await
        .expect("td.version");
    assert!(v.contains("1.1.0"), "device 5 rolled back to 1.1.0: {v:?}");

    w.goto(&format!("/rollouts/{rollout}")).await;
    w.wait_text("#rollout-state", "auto-paused").await;
    let cause = w.wait_text("#rollout-auto-pause", "").await;
    assert!(
        cause.contains(&lab.len().to_string()) || cause.contains("threshold"),
        "#rollout-auto-pause should give the cause (failed of finished, the threshold): {cause:?}"
    );
    w.wait_text(
        "#rollout-counts [data-state=\"failed\"] .count",
        &lab.len().to_string(),
    )
    .await;
    // The device page: the update with its LwM2M result.
    w.goto("/devices/5").await;
    let u = w.wait_text("#updates .update", "2.0.0").await;
    assert!(
        u.contains("UpdateFailed") || u.contains("(8)") || u.to_lowercase().contains("fail"),
        "device 5's update should show the LwM2M result UpdateFailed (8): {u:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_without_the_cookie_reaches_the_admin_api() {
    let Some(w) = world().await else { return };
    w.login().await;
    let before = w.server.snapshot().await;

    // From the page (same origin), `credentials: 'omit'`: no cookie, no token.
    let fetch =
        |method: &'static str, path: &'static str, body: &'static str, creds: &'static str| {
            let c = &w.c;
            async move {
                c.execute_async(
                    r#"const [method, path, body, creds, done] = arguments;
                   const init = {method, credentials: creds,
                                 headers: {'Content-Type': 'application/json'}};
                   if (method !== 'GET') init.body = body;
                   fetch(path, init).then(r => done(r.status), e => done('error: ' + e));"#,
                    vec![json!(method), json!(path), json!(body), json!(creds)],
                )
                .await
                .unwrap_or_else(|e| panic!("fetch {method} {path}: {e}"))
            }
        };
    for (method, path, body) in [
        ("GET", "/api/v1/devices", ""),
        ("GET", "/api/v1/rollouts", ""),
        (
            "POST",
            "/api/v1/products",
            r#"{"name":"x","hardware_id":"x"}"#,
        ),
        ("POST", "/api/v1/devices", r#"{"product":1}"#),
        (
            "POST",
            "/api/v1/rollouts",
            r#"{"release":1,"target":"product"}"#,
        ),
        ("POST", "/api/v1/rollouts/1/cancel", ""),
    ] {
        let got = fetch(method, path, body, "omit").await;
        assert_eq!(got, json!(401), "{method} {path} without the cookie");
    }
    // With the cookie but without the CSRF header, a change is refused too; a read is not.
    let got = fetch("GET", "/api/v1/devices", "", "same-origin").await;
    assert_eq!(
        got,
        json!(200),
        "GET /api/v1/devices with the session cookie"
    );
    let got = fetch(
        "POST",
        "/api/v1/products",
        r#"{"name":"x","hardware_id":"x"}"#,
        "same-origin",
    )
    .await;
    assert!(
        got == json!(401) || got == json!(403),
        "POST /api/v1/products with the cookie but no X-CSRF-Token: {got}"
    );
    // A console form posted without its csrf field: 403.
    let got =
        w.c.execute_async(
            r#"const done = arguments[0];
               const f = new FormData(); f.append('percent', '100');
               fetch('/rollouts', {method: 'POST', body: f, credentials: 'same-origin'})
                 .then(r => done(r.status), e => done('error: ' + e));"#,
            vec![],
        )
        .await
        .expect("fetch");
    assert_eq!(got, json!(403), "POST /rollouts without the csrf field");

    // Outside the browser, no cookie and no token: 401 for the API, the login page for the
    // console.
    let (s, _) = http(w.server.admin, "GET", "/api/v1/devices", &[], None)
        .await
        .expect("GET");
    assert_eq!(s, 401);
    let (s, _) = http(w.server.admin, "GET", "/fleet", &[], None)
        .await
        .expect("GET");
    assert!(
        (300..400).contains(&s),
        "GET /fleet without a session: {s} (a redirect to /login expected)"
    );

    assert_eq!(
        w.server.snapshot().await,
        before,
        "a request without the cookie (or the CSRF token) changed the store"
    );
}
