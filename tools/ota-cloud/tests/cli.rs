//! The `ota-cloud` binary end to end: init → product add → device add → release upload →
//! serve (spawned, killed at the end), with a simulated device checking in over UDP.

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::*;
use ota_cloud::keyfile::DeviceKeyFile;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ota-cloud"))
}

fn run(data: &Path, args: &[&str]) -> Output {
    bin().arg("--data").arg(data).args(args).output().unwrap()
}

fn ok(data: &Path, args: &[&str]) -> String {
    let o = run(data, args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Kills the server even when an assertion fails.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn init_provision_upload_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&data, &["init"]);
    #[cfg(unix)]
    for f in ["master.key", "admin.token"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let again = run(&data, &["init"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("initialised already"));

    let signer = signer();
    let pem = tmp.path().join("release.pub.pem");
    std::fs::write(&pem, public_pem(&signer)).unwrap();
    let product = ok(
        &data,
        &[
            "product",
            "add",
            "--name",
            "tracker",
            "--hardware-id",
            HW,
            "--release-key",
            pem.to_str().unwrap(),
        ],
    );
    assert_eq!(product.trim(), "1");

    let key = tmp.path().join("device.key");
    let device = ok(
        &data,
        &[
            "device",
            "add",
            "--product",
            "1",
            "--tag",
            "pilot",
            "--key-out",
            key.to_str().unwrap(),
        ],
    );
    let kf = DeviceKeyFile::read(&key).unwrap();
    assert_eq!(device.trim(), kf.device.0.to_string());
    let refused = run(
        &data,
        &[
            "device",
            "add",
            "--product",
            "1",
            "--key-out",
            key.to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success(), "a key file is never overwritten");

    let img = image(2_000, 9);
    let c = container(&signer, HW, (1, 2, 0), &img);
    let file = tmp.path().join("fw.ota");
    std::fs::write(&file, &c).unwrap();
    let mut tampered = c.clone();
    let at = tampered.len() - 10;
    tampered[at] ^= 0x80;
    let bad = tmp.path().join("bad.ota");
    std::fs::write(&bad, &tampered).unwrap();
    let o = run(
        &data,
        &["release", "upload", "--product", "1", bad.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("container refused"),
        "{o:?}"
    );
    let up = ok(
        &data,
        &[
            "release",
            "upload",
            "--product",
            "1",
            file.to_str().unwrap(),
        ],
    );
    assert!(up.contains("version 1.2.0"), "{up}");
    let digest = up.split_whitespace().next().unwrap().to_string();
    // Upload alone offers nothing: a rollout of it (by digest) to the whole product.
    let rollout = ok(
        &data,
        &["rollout", "start", "--release", &digest, "--product", "1"],
    );
    assert_eq!(rollout.trim(), "1");

    let (server, udp, _admin) = serve(&data);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let mut dev = Device::new(kf.device, *kf.root_key.expose());
        let mut ep = dev.wake();
        let mut link = Link::udp(udp).await;
        dev.request(&mut ep, &mut link, &checkin(fw(1, 0, 0), None))
            .await
    });
    let Got::Welcome { offer: Some(o), .. } = got else {
        panic!("no offer: {got:?}")
    };
    assert_eq!((o.version, o.image_size), (fw(1, 2, 0), 2_000));
    drop(server);

    let show = ok(&data, &["device", "show", &kf.device.0.to_string()]);
    assert!(show.contains("wakes 1"), "{show}");
    assert!(show.contains("firmware 1.0.0"), "{show}");
    let list = ok(&data, &["device", "list"]);
    assert!(list.lines().count() == 2, "{list}");
    let none = run(&tmp.path().join("nothing"), &["device", "list"]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("run `ota-cloud init"));
}

/// Starts `serve` on port 0 everywhere; returns it and its UDP and admin addresses.
fn serve(data: &Path) -> (Killed, SocketAddr, SocketAddr) {
    let child = bin()
        .arg("--data")
        .arg(data)
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
        .unwrap();
    let mut server = Killed(child);
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "listening udp ADDR tcp ADDR admin ADDR"
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"listening"), "{line}");
    assert_eq!(words.get(5), Some(&"admin"), "{line}");
    (server, words[2].parse().unwrap(), words[6].parse().unwrap())
}

/// One wake of `kf`'s device: a check-in carrying one publish `data` on topic 9.
fn publish(udp: SocketAddr, dev: &mut Device, data: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut up = checkin(fw(1, 0, 0), None);
        if let cloud_proto::Up::CheckIn(c) = &mut up {
            c.publishes
                .push(cloud_proto::Publish { topic: 9, data })
                .unwrap();
        }
        let mut ep = dev.wake();
        let mut link = Link::udp(udp).await;
        let got = dev.request(&mut ep, &mut link, &up).await;
        assert!(
            matches!(
                got,
                Got::Welcome {
                    publishes_acked: 1,
                    ..
                }
            ),
            "{got:?}"
        );
    });
}

#[test]
fn events_lists_filters_and_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&data, &["init"]);
    let pem = tmp.path().join("release.pub.pem");
    std::fs::write(&pem, public_pem(&signer())).unwrap();
    ok(
        &data,
        &[
            "product",
            "add",
            "--name",
            "tracker",
            "--hardware-id",
            HW,
            "--release-key",
            pem.to_str().unwrap(),
        ],
    );
    let mut devs = Vec::new();
    for n in 0..2 {
        let key = tmp.path().join(format!("d{n}.key"));
        ok(
            &data,
            &[
                "device",
                "add",
                "--product",
                "1",
                "--key-out",
                key.to_str().unwrap(),
            ],
        );
        let kf = DeviceKeyFile::read(&key).unwrap();
        devs.push(Device::new(kf.device, *kf.root_key.expose()));
    }
    let (server, udp, admin) = serve(&data);
    assert!(admin.ip().is_loopback());
    publish(udp, &mut devs[0], b"\x01\x02");
    publish(udp, &mut devs[1], b"\x03");
    publish(udp, &mut devs[0], b"");

    let (d0, d1) = (devs[0].id.0, devs[1].id.0);
    let all = ok(&data, &["events"]);
    let rows: Vec<Vec<&str>> = all.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 3, "{all}");
    // id, device, frame counter, topic, received_ms, data.
    assert_eq!((rows[0][1], rows[0][3]), (d0.to_string().as_str(), "9"));
    assert_eq!((rows[0][5], rows[1][5], rows[2][5]), ("0102", "03", "-"));
    let ids: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    let after = ok(&data, &["events", "--after", &ids[0].to_string()]);
    assert_eq!(after.lines().count(), 2, "{after}");
    let mine = ok(&data, &["events", "--device", &d0.to_string(), "--json"]);
    let objs: Vec<serde_json::Value> = mine
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 2, "{mine}");
    assert!(objs.iter().all(|o| o["device"] == d0));
    assert_eq!(objs[0]["data_hex"], "0102");
    assert_eq!(objs[0]["topic"], 9);
    let one = ok(
        &data,
        &["events", "--limit", "1", "--device", &d1.to_string()],
    );
    assert_eq!(one.lines().count(), 1);
    assert!(one.starts_with(&format!("{}\t{d1}\t", ids[1])), "{one}");

    // --follow: prints what is stored, then each new publish as it comes, until killed.
    let child = bin()
        .arg("--data")
        .arg(&data)
        .args(["events", "--follow", "--json", "--poll-ms", "20"])
        .args(["--after", &ids[1].to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut follower = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let out = follower.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next = || -> serde_json::Value {
        serde_json::from_str(&rx.recv_timeout(GUARD).expect("follow printed nothing")).unwrap()
    };
    assert_eq!(next()["id"], ids[2]);
    publish(udp, &mut devs[1], b"\x04\x05");
    let new = next();
    assert_eq!(
        (new["device"].as_u64(), new["data_hex"].as_str()),
        (Some(u64::from(d1)), Some("0405"))
    );
    assert!(new["id"].as_u64().unwrap() > ids[2]);
    // Still running (it only stops when killed).
    assert!(follower.0.try_wait().unwrap().is_none());
    drop(follower);
    drop(server);
}

/// Runs a command that must fail; returns its one-line error.
fn fails(data: &Path, args: &[&str]) -> String {
    let o = run(data, args);
    assert!(
        !o.status.success(),
        "{args:?} succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8(o.stderr).unwrap();
    // (A backtrace follows when RUST_BACKTRACE is set in the test's environment.)
    let msg = err
        .split("\n\nStack backtrace")
        .next()
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(msg.lines().count(), 1, "one line: {err}");
    msg
}

/// The rollout commands: release list with ids, start (by id, each target kind, staged,
/// threshold, deferral), list, show with progress, percent, pause, resume, cancel; and the
/// refusals, each one line, changing nothing.
#[test]
fn rollout_commands_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&data, &["init"]);
    let signer = signer();
    let pem = tmp.path().join("release.pub.pem");
    std::fs::write(&pem, public_pem(&signer)).unwrap();
    for name in ["tracker", "other"] {
        ok(
            &data,
            &[
                "product",
                "add",
                "--name",
                name,
                "--hardware-id",
                HW,
                "--release-key",
                pem.to_str().unwrap(),
            ],
        );
    }
    let key = tmp.path().join("d.key");
    let dev = ok(
        &data,
        &[
            "device",
            "add",
            "--product",
            "1",
            "--tag",
            "pilot",
            "--key-out",
            key.to_str().unwrap(),
        ],
    );
    let dev = dev.trim().to_string();
    let mut digests = Vec::new();
    for (i, v) in [(1, 1, 0), (1, 2, 0)].into_iter().enumerate() {
        let file = tmp.path().join(format!("fw{i}.ota"));
        std::fs::write(&file, container(&signer, HW, v, &image(1_000, i as u8))).unwrap();
        let up = ok(
            &data,
            &[
                "release",
                "upload",
                "--product",
                "1",
                file.to_str().unwrap(),
            ],
        );
        assert!(up.trim().ends_with(&format!("id {}", i + 1)), "{up}");
        digests.push(up.split_whitespace().next().unwrap().to_string());
    }
    let list = ok(&data, &["release", "list", "--product", "1"]);
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert!(
        rows[0].starts_with("1\t1.1.0\t") && rows[0].contains(&digests[0]),
        "{list}"
    );
    assert!(rows[1].starts_with("2\t1.2.0\t"), "{list}");

    let staged = ok(
        &data,
        &[
            "rollout",
            "start",
            "--release",
            "2",
            "--product",
            "1",
            "--percent",
            "12.5",
            "--error-threshold",
            "20",
            "--min-finished",
            "5",
            "--defer-until",
            "1900000000",
        ],
    );
    assert_eq!(staged.trim(), "1");
    assert_eq!(
        ok(
            &data,
            &["rollout", "start", "--release", "1", "--group", "pilot"]
        )
        .trim(),
        "2"
    );
    assert_eq!(
        ok(
            &data,
            &["rollout", "start", "--release", "1", "--device", &dev]
        )
        .trim(),
        "3"
    );
    let show = ok(&data, &["rollout", "show", "1"]);
    for want in [
        "release 2 version 1.2.0",
        "target product",
        "share 12.5%",
        "state running",
        "error threshold 20% after 5 finished",
        "defer until 1900000000 s",
        "offered 0",
        "succeeded 0",
    ] {
        assert!(show.contains(want), "{want}: {show}");
    }
    let targeted: u64 = show
        .lines()
        .find_map(|l| l.strip_prefix("targeted "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(targeted <= 1);

    assert!(ok(&data, &["rollout", "percent", "1", "50"]).contains("\t50%\trunning"));
    assert!(ok(&data, &["rollout", "pause", "1"]).contains("paused (operator)"));
    let err = fails(&data, &["rollout", "pause", "1"]);
    assert!(
        err.contains("rollout 1 is paused: cannot pause it"),
        "{err}"
    );
    let err = fails(&data, &["rollout", "percent", "1", "10"]);
    assert!(err.contains("can only be raised"), "{err}");
    assert!(ok(&data, &["rollout", "resume", "1"]).contains("running"));
    assert!(ok(&data, &["rollout", "cancel", "2"]).contains("cancelled"));
    let err = fails(&data, &["rollout", "resume", "2"]);
    assert!(
        err.contains("rollout 2 is cancelled: cannot resume it"),
        "{err}"
    );

    let list = ok(&data, &["rollout", "list", "--product", "1"]);
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{list}");
    assert!(
        rows[0].starts_with("1\t2\t1.2.0\t1\tproduct\t50%\trunning"),
        "{list}"
    );
    assert!(
        rows[1].contains("group pilot") && rows[1].ends_with("cancelled"),
        "{list}"
    );
    assert!(rows[2].contains(&format!("device {dev}")), "{list}");
    assert_eq!(
        ok(&data, &["rollout", "list", "--product", "2"])
            .lines()
            .count(),
        1
    );

    // Refusals: one line each, nothing added.
    let err = fails(
        &data,
        &["rollout", "start", "--release", "9", "--product", "1"],
    );
    assert!(err.contains("unknown release 9"), "{err}");
    let err = fails(
        &data,
        &[
            "rollout",
            "start",
            "--release",
            &"ab".repeat(32),
            "--product",
            "1",
        ],
    );
    assert!(err.contains("unknown release"), "{err}");
    let err = fails(
        &data,
        &["rollout", "start", "--release", "1", "--product", "2"],
    );
    assert!(err.contains("is of product 1, not 2"), "{err}");
    let err = fails(
        &data,
        &["rollout", "start", "--release", "1", "--device", "77"],
    );
    assert!(err.contains("unknown device 77"), "{err}");
    let err = fails(
        &data,
        &[
            "rollout",
            "start",
            "--release",
            "1",
            "--product",
            "1",
            "--percent",
            "120",
        ],
    );
    assert!(err.contains("not a percentage"), "{err}");
    let err = fails(&data, &["rollout", "pause", "42"]);
    assert!(err.contains("unknown rollout 42"), "{err}");
    let err = fails(&data, &["rollout", "show", "42"]);
    assert!(err.contains("unknown rollout 42"), "{err}");
    assert!(
        !run(&data, &["rollout", "start", "--release", "1"])
            .status
            .success(),
        "a target is required"
    );
    assert_eq!(
        ok(&data, &["rollout", "list"]).lines().count(),
        4,
        "nothing added"
    );
}

/// `product list`: every product by id with its hardware id and trusted key count.
#[test]
fn product_list() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ok(&data, &["init"]);
    assert_eq!(
        ok(&data, &["product", "list"]),
        "id\tname\thardware_id\trelease_keys\n"
    );
    let pem = tmp.path().join("release.pub.pem");
    std::fs::write(&pem, public_pem(&signer())).unwrap();
    let key = pem.to_str().unwrap();
    ok(
        &data,
        &[
            "product",
            "add",
            "--name",
            "tracker",
            "--hardware-id",
            HW,
            "--release-key",
            key,
        ],
    );
    ok(
        &data,
        &[
            "product",
            "add",
            "--name",
            "logger",
            "--hardware-id",
            "logger-v2",
        ],
    );
    assert_eq!(
        ok(&data, &["product", "list"]),
        format!(
            "id\tname\thardware_id\trelease_keys\n1\ttracker\t{HW}\t1\n2\tlogger\tlogger-v2\t0\n"
        )
    );
}
