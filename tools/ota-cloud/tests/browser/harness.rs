//! What a console test stands on: `chromedriver` (Debian's `chromium-driver`) started on a free
//! port with headless Chromium at a fixed window size, the `ota-cloud` binary serving a fresh
//! SQLite data directory (UDP for the fleet, the admin address for the console and the API),
//! a bare HTTP client for the test's own look at the admin API, and bounded waits.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The window every test (and every screenshot) uses.
pub const WINDOW: (u32, u32) = (1280, 900);

/// How long a wait for the page may take before the test fails (a guard, never a measure).
pub const WAIT: Duration = Duration::from_secs(20);

/// Kills a child process when dropped, even when an assertion fails.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where `chromedriver` is: `OTA_CHROMEDRIVER`, else the first `chromedriver` on `PATH`, else
/// Debian's `/usr/bin/chromedriver`. `None` when there is none (the tests then skip).
pub fn chromedriver_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OTA_CHROMEDRIVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("chromedriver"))
        .chain([PathBuf::from("/usr/bin/chromedriver")])
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `chromedriver` on a free loopback port.
pub struct Driver {
    _child: Killed,
    pub url: String,
}

impl Driver {
    pub async fn start(bin: &Path) -> Self {
        // The port is free when picked; chromedriver binds it a moment later. Another process
        // taking it in between makes the start fail below, loudly.
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let child = Killed(child);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let t0 = Instant::now();
        loop {
            if let Ok((200, _)) = http(addr, "GET", "/status", &[], None).await {
                break;
            }
            assert!(
                t0.elapsed() < WAIT,
                "chromedriver did not answer /status on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A new headless Chromium session at [`WINDOW`].
    pub async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        let mut args = vec![
            "--headless=new".to_string(),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            "--disable-extensions".into(),
            "--disable-dev-shm-usage".into(),
            "--hide-scrollbars".into(),
            "--force-device-scale-factor=1".into(),
        ];
        // CI runs as root, where Chromium refuses its sandbox.
        if is_root() {
            args.push("--no-sandbox".into());
        }
        let mut opts = json!({ "args": args });
        if let Some(bin) = std::env::var_os("OTA_CHROMIUM") {
            opts["binary"] = json!(bin.to_string_lossy());
        } else if Path::new("/usr/bin/chromium").is_file() {
            opts["binary"] = json!("/usr/bin/chromium");
        }
        caps.insert("goog:chromeOptions".into(), opts);
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("a Chromium session from chromedriver: {e}"));
        c.set_window_size(WINDOW.0, WINDOW.1)
            .await
            .expect("window size");
        c
    }
}

fn is_root() -> bool {
    // The effective uid from /proc (no libc dependency); anything unreadable: not root.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `ota-cloud serve` on a fresh data directory.
pub struct ServerProc {
    _child: Killed,
    pub dir: tempfile::TempDir,
    pub udp: SocketAddr,
    pub admin: SocketAddr,
    pub token: String,
}

impl ServerProc {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let bin = env!("CARGO_BIN_EXE_ota-cloud");
        let out = Command::new(bin)
            .arg("--data")
            .arg(&data)
            .arg("init")
            .output()
            .expect("ota-cloud init");
        assert!(
            out.status.success(),
            "ota-cloud init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = std::fs::read_to_string(data.join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_string();
        let child = Command::new(bin)
            .arg("--data")
            .arg(&data)
            .args([
                "serve",
                "--udp",
                "127.0.0.1:0",
                "--tcp",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ota-cloud serve");
        let mut child = Killed(child);
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the listening line");
        // "listening udp ADDR tcp ADDR admin ADDR"
        let w: Vec<&str> = line.split_whitespace().collect();
        assert!(
            w.first() == Some(&"listening") && w.get(5) == Some(&"admin"),
            "unexpected first line of ota-cloud serve: {line:?}"
        );
        Self {
            _child: child,
            dir,
            udp: w[2].parse().expect("udp address"),
            admin: w[6].parse().expect("admin address"),
            token,
        }
    }

    /// The console's base URL.
    pub fn base(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// The admin API with the bearer token (the test's own view, never the browser's).
    pub async fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let (status, bytes) = http(
            self.admin,
            method,
            path,
            &[("Authorization", &auth)],
            body.map(|b| ("application/json", b.to_string().into_bytes())),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }

    /// The admin API with the bearer token and a binary body (a container upload).
    pub async fn api_bytes(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let (status, bytes) = http(
            self.admin,
            method,
            path,
            &[("Authorization", &auth)],
            Some(("application/octet-stream", body)),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// `api`, expecting `want`.
    pub async fn api_ok(&self, method: &str, path: &str, body: Option<&Value>, want: u16) -> Value {
        let (s, v) = self.api(method, path, body).await;
        assert_eq!(s, want, "{method} {path}: {v}");
        v
    }

    /// Everything an operator can change, read through the API: products, devices (with
    /// their status), releases, rollouts. Equal snapshots: nothing changed.
    pub async fn snapshot(&self) -> Value {
        let products = self.api_ok("GET", "/api/v1/products", None, 200).await;
        let mut releases = Vec::new();
        for p in products["products"].as_array().cloned().unwrap_or_default() {
            let id = &p["id"];
            releases.push(
                self.api_ok("GET", &format!("/api/v1/products/{id}/releases"), None, 200)
                    .await,
            );
        }
        json!({
            "products": products,
            "releases": releases,
            "devices": self.api_ok("GET", "/api/v1/devices", None, 200).await,
            "rollouts": self.api_ok("GET", "/api/v1/rollouts", None, 200).await,
        })
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`): the status and body.
/// Enough for loopback calls to axum and chromedriver (Content-Length or chunked bodies).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Vec<u8>)>,
) -> Result<(u16, Vec<u8>), String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = match body {
        Some((ty, b)) => {
            req.push_str(&format!("Content-Type: {ty}\r\n"));
            b
        }
        None => Vec::new(),
    };
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = req.into_bytes();
    out.extend_from_slice(&body);
    s.write_all(&out).await.map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(WAIT, read_response(&mut s))
        .await
        .map_err(|_| "no (whole) answer".to_string())??;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let mut body = resp[split + 4..].to_vec();
    if is_chunked(&head) {
        body = unchunk(&body)?;
    }
    Ok((status, body))
}

fn is_chunked(head: &str) -> bool {
    head.to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// Reads one response: up to its Content-Length, the end of its chunked body, or the end of
/// the connection (chromedriver keeps connections open whatever the request asked).
async fn read_response(s: &mut tokio::net::TcpStream) -> Result<Vec<u8>, String> {
    let mut resp = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(resp);
        }
        resp.extend_from_slice(&buf[..n]);
        let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&resp[..split]);
        let body = &resp[split + 4..];
        if is_chunked(&head) {
            if body.ends_with(b"0\r\n\r\n") {
                return Ok(resp);
            }
        } else if let Some(len) = content_length(&head) {
            if body.len() >= len {
                return Ok(resp);
            }
        }
    }
}

fn unchunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(out);
        }
        let data = b.get(eol + 2..eol + 2 + n).ok_or("short chunk")?;
        out.extend_from_slice(data);
        b = b.get(eol + 4 + n..).ok_or("short chunk")?;
    }
}

/// Polls `probe` until it returns `Ok`, at most [`WAIT`]; on time-out fails with `expected`
/// and the last thing `probe` saw (what the page showed).
pub async fn wait_until<T, F, Fut>(expected: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let t0 = Instant::now();
    loop {
        let seen = match probe().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        if t0.elapsed() > WAIT {
            panic!("waited {WAIT:?} for {expected}; the page showed: {seen}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page's live-refresh counter (`document.body.dataset.liveTick`), or `None`.
pub async fn live_tick(c: &Client) -> Option<u64> {
    let v = c
        .execute(
            "return document.body ? (document.body.dataset.liveTick || null) : null;",
            vec![],
        )
        .await
        .ok()?;
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
}

/// Waits until the page has refreshed its live numbers at least twice after now (one refresh
/// may have been under way before the state changed), without reloading it.
pub async fn wait_live_refresh(c: &Client, what: &str) {
    let start = live_tick(c).await;
    let expected = format!("two live refreshes ({what}) from liveTick {start:?}");
    wait_until(&expected, || async {
        let now = live_tick(c).await;
        match (start, now) {
            (Some(a), Some(b)) if b >= a + 2 => Ok(()),
            (None, Some(b)) if b >= 2 => Ok(()),
            _ => Err(format!("liveTick {now:?}")),
        }
    })
    .await
}

/// Marks the page now shown (a property of its `window`, which a reload or a navigation
/// loses), so that [`assert_not_reloaded`] can tell that later changes came in place.
pub async fn mark_page(c: &Client) {
    js(c, "window.__otaTestMark = true; return null;").await;
}

/// Fails unless the page marked by [`mark_page`] is still the one shown: what changed on it
/// since came from the live refresh, not from a reload.
pub async fn assert_not_reloaded(c: &Client, what: &str) {
    let v = js(c, "return window.__otaTestMark === true;").await;
    assert_eq!(
        v,
        Value::Bool(true),
        "{what}: the page was reloaded or left ({})",
        url(c).await
    );
}

/// The text of the first element matching `css`, or what was there instead.
pub async fn text(c: &Client, css: &str) -> Result<String, String> {
    let Ok(e) = c.find(Locator::Css(css)).await else {
        return Err(format!("no element {css} at {}", url(c).await));
    };
    e.text().await.map_err(|e| e.to_string())
}

pub async fn url(c: &Client) -> String {
    c.current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_else(|e| format!("(no url: {e})"))
}

/// Runs `script` in the page and returns its result (a JSON value).
pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Saves a PNG of the whole page (the window stretched to its height, at most 2,400 px, then
/// put back to [`WINDOW`]) as `DIR/name` when `OTA_CONSOLE_SCREENSHOTS=DIR` is set
/// (`scripts/console-screenshots.sh`); otherwise takes it anyway (a page that cannot be
/// rendered fails here) and drops it.
pub async fn screenshot(c: &Client, name: &str) {
    // The window's height includes what is not page (outer - inner).
    let h = js(
        c,
        "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight;",
    )
    .await;
    let h = h
        .as_u64()
        .unwrap_or(u64::from(WINDOW.1))
        .clamp(u64::from(WINDOW.1), 2400);
    c.set_window_size(WINDOW.0, h as u32)
        .await
        .expect("window size");
    let png = c.screenshot().await.expect("screenshot");
    c.set_window_size(WINDOW.0, WINDOW.1)
        .await
        .expect("window size");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    if let Some(dir) = std::env::var_os("OTA_CONSOLE_SCREENSHOTS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let p = dir.join(name);
        std::fs::write(&p, &png).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        eprintln!("screenshot: {}", p.display());
    }
}
