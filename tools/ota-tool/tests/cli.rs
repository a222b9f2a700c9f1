//! End-to-end tests of the `ota-tool` binary: exit codes, messages and files.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_ota-tool");
const IMAGE_LEN: usize = 10_000;

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(BIN).args(args).output().expect("run ota-tool");
    Output {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// Runs and expects success with nothing on stderr; returns stdout.
fn ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let o = run(args);
    assert_eq!(o.code, 0, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    assert_eq!(o.stderr, "");
    o.stdout
}

/// Runs and expects exit 1 with exactly one stderr line `error: ...` containing `fragment`.
fn fails<I, S>(args: I, fragment: &str) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let o = run(args);
    assert_eq!(o.code, 1, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    assert_eq!(o.stdout, "");
    assert!(
        o.stderr.starts_with("error: ") && o.stderr.ends_with('\n'),
        "{:?}",
        o.stderr
    );
    assert_eq!(o.stderr.lines().count(), 1, "{:?}", o.stderr);
    assert!(
        o.stderr.contains(fragment),
        "{:?} does not contain {fragment:?}",
        o.stderr
    );
    o.stderr
}

/// Runs and expects a usage error (clap: exit 2).
fn usage_error<I, S>(args: I, fragment: &str)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let o = run(args);
    assert_eq!(o.code, 2, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    assert!(o.stderr.starts_with("error: "), "{:?}", o.stderr);
    assert!(o.stderr.contains(fragment), "{:?}", o.stderr);
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 11) as u8
        })
        .collect()
}

/// A temp dir with a key pair, an image and the container signed from them.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Self {
        let f = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        f.keygen("key");
        fs::write(f.path("fw.bin"), noise(IMAGE_LEN, 1)).unwrap();
        f.sign("key", "fw.ota", &[]);
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `<name>.pem` and `<name>.pub.pem`.
    fn keygen(&self, name: &str) {
        ok([
            OsStr::new("keygen"),
            "--out".as_ref(),
            self.path(&format!("{name}.pem")).as_os_str(),
            "--pub-out".as_ref(),
            self.path(&format!("{name}.pub.pem")).as_os_str(),
        ]);
    }

    /// Signs fw.bin with `<key>.pem` into `out` (version 1.2.3, counter 3, electron-u260,
    /// chunk 1024 unless `extra` overrides).
    fn sign(&self, key: &str, out: &str, extra: &[&str]) -> String {
        ok(self.sign_args(key, out, extra))
    }

    /// The `sign` arguments; `extra` holds flag/value pairs that replace the defaults or are
    /// added.
    fn sign_args(&self, key: &str, out: &str, extra: &[&str]) -> Vec<String> {
        let p = |n: &str| self.path(n).to_str().unwrap().to_owned();
        let mut args = [
            "sign",
            "--key",
            &p(&format!("{key}.pem")),
            "--image",
            &p("fw.bin"),
            "--version",
            "1.2.3",
            "--security-counter",
            "3",
            "--hardware-id",
            "electron-u260",
            "--out",
            &p(out),
        ]
        .map(String::from)
        .to_vec();
        for pair in extra.chunks(2) {
            let (flag, value) = (pair[0], pair[1]);
            match args.iter().position(|a| a == flag) {
                Some(i) => args[i + 1] = value.to_owned(),
                None => args.extend([flag.to_owned(), value.to_owned()]),
            }
        }
        args
    }

    /// `verify --pubkey <key>.pub.pem ... <file> <extra...>`.
    fn verify_args(&self, keys: &[&str], file: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["verify".to_owned()];
        for k in keys {
            args.push("--pubkey".into());
            args.push(self.path(&format!("{k}.pub.pem")).to_str().unwrap().into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(self.path(file).to_str().unwrap().into());
        args
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(name)).unwrap()
    }

    /// Manifest length M from the container header.
    fn manifest_len(&self) -> usize {
        let b = self.bytes("fw.ota");
        u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize
    }

    /// Writes fw.ota with byte `at` XOR 0x01 to `name`.
    fn flipped(&self, at: usize, name: &str) {
        let mut b = self.bytes("fw.ota");
        b[at] ^= 0x01;
        fs::write(self.path(name), b).unwrap();
    }

    fn inspect_json(&self, file: &str) -> serde_json::Value {
        let out = ok(["inspect", "--json", self.path(file).to_str().unwrap()]);
        assert_eq!(out.lines().count(), 1, "{out}");
        serde_json::from_str(&out).expect("inspect --json prints JSON")
    }
}

#[test]
fn keygen_sign_verify_ok() {
    let f = Fixture::new();
    let out = ok(f.verify_args(&["key"], "fw.ota", &[]));
    assert_eq!(out, format!("OK 1.2.3 counter 3 {IMAGE_LEN} bytes\n"));
    // The container holds the image unchanged after a header and the manifest.
    let c = f.bytes("fw.ota");
    let m = f.manifest_len();
    assert_eq!(&c[..5], b"OTAC\x01");
    // 10 chunks of 1024: 120 + 10 * 16 + 64.
    assert_eq!(m, 344);
    assert_eq!(c.len(), 16 + m + IMAGE_LEN);
    assert_eq!(&c[16 + m..], &f.bytes("fw.bin")[..]);
}

#[test]
fn sign_prints_one_summary_line() {
    let f = Fixture::new();
    let out = f.sign("key", "again.ota", &["--chunk-size", "256"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let id = f.inspect_json("fw.ota")["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for want in [
        "version 1.2.3",
        "counter 3",
        "10000 bytes",
        "40 chunks",
        "manifest 824 bytes",
        &format!("key id {id}"),
    ] {
        assert!(out.contains(want), "{out:?} lacks {want:?}");
    }
    // Signing is deterministic: the same inputs give the same file.
    f.sign("key", "fw2.ota", &[]);
    assert_eq!(f.bytes("fw.ota"), f.bytes("fw2.ota"));
}

#[test]
fn manifest_tampering_is_a_bad_signature() {
    let f = Fixture::new();
    let m = f.manifest_len();
    // Version minor, security counter, a chunk table entry, the signature's first and last
    // bytes: the manifest still parses, the signature no longer verifies.
    for at in [34, 40, 120 + 16 * 3 + 5, m - 64, m - 1] {
        f.flipped(16 + at, "bad.ota");
        fails(f.verify_args(&["key"], "bad.ota", &[]), "bad signature");
    }
}

#[test]
fn manifest_structure_damage_is_malformed() {
    let f = Fixture::new();
    // Manifest magic, format version, chunk count.
    for at in [0, 4, 52] {
        f.flipped(16 + at, "bad.ota");
        fails(
            f.verify_args(&["key"], "bad.ota", &[]),
            "malformed manifest",
        );
    }
}

#[test]
fn key_id_tampering_is_an_unknown_key() {
    let f = Fixture::new();
    f.flipped(16 + 8, "bad.ota");
    fails(f.verify_args(&["key"], "bad.ota", &[]), "unknown key id");
}

#[test]
fn image_tampering_names_the_chunk() {
    let f = Fixture::new();
    let m = f.manifest_len();
    for (offset, chunk) in [(0, 0), (7 * 1024 + 5, 7), (IMAGE_LEN - 1, 9)] {
        f.flipped(16 + m + offset, "bad.ota");
        fails(
            f.verify_args(&["key"], "bad.ota", &[]),
            &format!("chunk {chunk} digest mismatch"),
        );
    }
}

#[test]
fn truncated_or_extended_file_is_a_container_error() {
    let f = Fixture::new();
    let good = f.bytes("fw.ota");
    for (bytes, fragment) in [
        (good[..good.len() - 1].to_vec(), "truncated"),
        (good[..10].to_vec(), "truncated"),
        (good[..16 + 100].to_vec(), "truncated"),
        ([&good[..], b"x"].concat(), "trailing bytes"),
        (Vec::new(), "truncated"),
        (b"PK\x03\x04 not a container".to_vec(), "bad magic"),
    ] {
        fs::write(f.path("bad.ota"), &bytes).unwrap();
        fails(f.verify_args(&["key"], "bad.ota", &[]), fragment);
        fails(["inspect", f.path("bad.ota").to_str().unwrap()], fragment);
    }
    let mut b = good.clone();
    b[4] = 2;
    fs::write(f.path("bad.ota"), &b).unwrap();
    fails(
        f.verify_args(&["key"], "bad.ota", &[]),
        "container version 2",
    );
    let mut b = good;
    b[7] = 1;
    fs::write(f.path("bad.ota"), &b).unwrap();
    fails(f.verify_args(&["key"], "bad.ota", &[]), "reserved");
}

#[test]
fn unknown_key_is_named() {
    let f = Fixture::new();
    f.keygen("other");
    let id = f.inspect_json("fw.ota")["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 16);
    fails(
        f.verify_args(&["other"], "fw.ota", &[]),
        &format!("unknown key id {id}"),
    );
}

#[test]
fn key_rotation_two_trusted_keys() {
    let f = Fixture::new();
    f.keygen("next");
    f.sign("next", "next.ota", &[]);
    let want = format!("OK 1.2.3 counter 3 {IMAGE_LEN} bytes\n");
    // A device that trusts both accepts images signed by either, in any key order.
    assert_eq!(ok(f.verify_args(&["key", "next"], "next.ota", &[])), want);
    assert_eq!(ok(f.verify_args(&["next", "key"], "next.ota", &[])), want);
    assert_eq!(ok(f.verify_args(&["key", "next"], "fw.ota", &[])), want);
    // One that trusts only the old key does not.
    fails(f.verify_args(&["key"], "next.ota", &[]), "unknown key id");
}

#[test]
fn hardware_id_policy() {
    let f = Fixture::new();
    fails(
        f.verify_args(&["key"], "fw.ota", &["--hardware-id", "boron"]),
        "wrong hardware: image is for hardware id electron-u260, not boron",
    );
    ok(f.verify_args(&["key"], "fw.ota", &["--hardware-id", "electron-u260"]));
    // The same id in hex form.
    let hex = "0x656c656374726f6e2d75323630000000";
    ok(f.verify_args(&["key"], "fw.ota", &["--hardware-id", hex]));
    // A raw hex id that is not a name is shown in hex.
    let raw = "0x00112233445566778899aabbccddeeff";
    f.sign("key", "raw.ota", &["--hardware-id", raw]);
    ok(f.verify_args(&["key"], "raw.ota", &["--hardware-id", raw]));
    fails(
        f.verify_args(&["key"], "raw.ota", &["--hardware-id", "electron-u260"]),
        raw,
    );
    assert_eq!(f.inspect_json("raw.ota")["hardware_id"], raw);
}

#[test]
fn security_counter_policy() {
    let f = Fixture::new();
    for min in ["0", "2", "3"] {
        ok(f.verify_args(&["key"], "fw.ota", &["--min-counter", min]));
    }
    fails(
        f.verify_args(&["key"], "fw.ota", &["--min-counter", "4"]),
        "security counter 3 is below the minimum 4",
    );
    // Both policies at once, both met.
    ok(f.verify_args(
        &["key"],
        "fw.ota",
        &["--min-counter", "3", "--hardware-id", "electron-u260"],
    ));
}

#[test]
fn inspect_json_matches_sign_inputs() {
    let f = Fixture::new();
    let base = "ab".repeat(32);
    f.sign(
        "key",
        "delta.ota",
        &[
            "--version",
            "2.10.65535",
            "--security-counter",
            "4294967295",
            "--chunk-size",
            "4096",
            "--base-digest",
            &base,
        ],
    );
    let j = f.inspect_json("delta.ota");
    let image = f.bytes("fw.bin");
    let container = f.bytes("delta.ota");
    let m = u32::from_le_bytes(container[8..12].try_into().unwrap()) as usize;
    assert_eq!(j["format"], 1);
    assert_eq!(j["version"], "2.10.65535");
    assert_eq!(j["security_counter"], 4294967295u32);
    assert_eq!(j["hardware_id"], "electron-u260");
    assert_eq!(j["hardware_id_hex"], "0x656c656374726f6e2d75323630000000");
    assert_eq!(j["image_size"], IMAGE_LEN);
    assert_eq!(j["chunk_size"], 4096);
    assert_eq!(j["chunk_count"], 3);
    assert_eq!(j["base_sha256"], base.as_str());
    assert_eq!(j["manifest_len"], m);
    assert_eq!(m, 120 + 3 * 16 + 64);
    assert_eq!(
        j["signature"].as_str().unwrap(),
        hex::encode(&container[16 + m - 64..16 + m])
    );
    let pk =
        ed25519_compact::PublicKey::from_pem(&fs::read_to_string(f.path("key.pub.pem")).unwrap())
            .unwrap();
    assert_eq!(
        j["key_id"].as_str().unwrap(),
        hex::encode(ota_core::KeyId::of(&pk).0)
    );
    assert_eq!(
        j["image_sha256"].as_str().unwrap(),
        hex::encode(ota_core::Sha256Digest::of(&image).0)
    );

    // Without a base digest: null.
    let j = f.inspect_json("fw.ota");
    assert!(j["base_sha256"].is_null());
    assert_eq!(j["version"], "1.2.3");
    assert_eq!(j["security_counter"], 3);
    assert_eq!(j["chunk_count"], 10);
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    for k in [
        "key_id",
        "hardware_id",
        "hardware_id_hex",
        "version",
        "security_counter",
        "image_size",
        "chunk_size",
        "chunk_count",
        "image_sha256",
        "base_sha256",
        "manifest_len",
        "signature",
    ] {
        assert!(keys.contains(&k), "missing {k} in {keys:?}");
    }
}

#[test]
fn inspect_human_shows_every_field() {
    let f = Fixture::new();
    let out = ok(["inspect", f.path("fw.ota").to_str().unwrap()]);
    let j = f.inspect_json("fw.ota");
    for (label, value) in [
        ("format", "1".to_owned()),
        ("key id", j["key_id"].as_str().unwrap().to_owned()),
        ("hardware id", "electron-u260".to_owned()),
        ("version", "1.2.3".to_owned()),
        ("security counter", "3".to_owned()),
        ("image size", format!("{IMAGE_LEN} bytes")),
        ("chunk size", "1024 bytes".to_owned()),
        ("chunk count", "10".to_owned()),
        (
            "image sha256",
            j["image_sha256"].as_str().unwrap().to_owned(),
        ),
        ("base sha256", "none".to_owned()),
        ("manifest length", "344 bytes".to_owned()),
        ("signature", j["signature"].as_str().unwrap().to_owned()),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(label) && l.ends_with(&value)),
            "no line {label:?} ... {value:?} in\n{out}"
        );
    }
    assert!(out.contains("not verified"), "{out}");
}

#[test]
fn inspect_does_not_verify_but_rejects_malformed() {
    let f = Fixture::new();
    let m = f.manifest_len();
    // A forged signature or tampered image still inspects...
    f.flipped(16 + m - 1, "badsig.ota");
    ok(["inspect", f.path("badsig.ota").to_str().unwrap()]);
    f.flipped(16 + m + 3, "badimg.ota");
    ok(["inspect", "--json", f.path("badimg.ota").to_str().unwrap()]);
    // ...a malformed manifest does not.
    f.flipped(16, "badmagic.ota");
    fails(
        ["inspect", f.path("badmagic.ota").to_str().unwrap()],
        "malformed manifest",
    );
    // Nor an image whose length differs from the manifest's: move one image byte into the
    // manifest length (the container framing itself stays consistent).
    let mut b = f.bytes("fw.ota");
    b[8..12].copy_from_slice(&(m as u32 + 1).to_le_bytes());
    b[12..16].copy_from_slice(&(IMAGE_LEN as u32 - 1).to_le_bytes());
    fs::write(f.path("shifted.ota"), b).unwrap();
    fails(
        ["inspect", f.path("shifted.ota").to_str().unwrap()],
        "malformed manifest",
    );
    fails(
        f.verify_args(&["key"], "shifted.ota", &[]),
        "malformed manifest",
    );
}

#[test]
fn keygen_files_and_overwrite() {
    let f = Fixture::new();
    let key = f.path("key.pem");
    let before = fs::read(&key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "private key mode {mode:o}");
    }
    let text = String::from_utf8(before.clone()).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
    assert_eq!(text.lines().count(), 3);
    let public = fs::read_to_string(f.path("key.pub.pem")).unwrap();
    assert!(
        public.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{public}"
    );

    let key_s = key.to_str().unwrap();
    fails(["keygen", "--out", key_s], "exists (use --force");
    assert_eq!(
        fs::read(&key).unwrap(),
        before,
        "refused keygen changed the key"
    );
    // An existing public key file also refuses, before the private key is written.
    let fresh = f.path("fresh.pem");
    fails(
        [
            "keygen",
            "--out",
            fresh.to_str().unwrap(),
            "--pub-out",
            f.path("key.pub.pem").to_str().unwrap(),
        ],
        "exists",
    );
    assert!(!fresh.exists());
    fails(
        ["keygen", "--out", key_s, "--pub-out", key_s, "--force"],
        "same file",
    );

    // --force replaces, and without --pub-out the public key goes to stdout.
    let printed = ok(["keygen", "--out", key_s, "--force"]);
    assert_ne!(fs::read(&key).unwrap(), before);
    assert!(
        printed.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{printed}"
    );
    fs::write(f.path("printed.pub.pem"), &printed).unwrap();
    f.sign("key", "new.ota", &[]);
    ok(f.verify_args(&["printed"], "new.ota", &[]));
    fails(f.verify_args(&["key"], "new.ota", &[]), "unknown key id");
}

#[test]
fn sign_errors() {
    let f = Fixture::new();
    for size in ["1000", "0", "1", "128", "131072"] {
        fails(
            f.sign_args("key", "x.ota", &["--chunk-size", size]),
            "chunk size",
        );
    }
    // A public key where the private key belongs.
    fails(f.sign_args("key.pub", "x.ota", &[]), "this is a public key");
    // Missing key and image files.
    fails(f.sign_args("nope", "x.ota", &[]), "nope.pem");
    fs::remove_file(f.path("fw.bin")).unwrap();
    fails(f.sign_args("key", "x.ota", &[]), "fw.bin");
    fs::write(f.path("fw.bin"), b"").unwrap();
    fails(f.sign_args("key", "x.ota", &[]), "image size is zero");
    assert!(!f.path("x.ota").exists());
}

#[test]
fn verify_key_file_errors() {
    let f = Fixture::new();
    // The private key given as a trusted public key.
    fails(
        [
            "verify",
            "--pubkey",
            f.path("key.pem").to_str().unwrap(),
            f.path("fw.ota").to_str().unwrap(),
        ],
        "this is a private key",
    );
    fails(
        f.verify_args(&["missing"], "fw.ota", &[]),
        "missing.pub.pem",
    );
    fails(f.verify_args(&["key"], "missing.ota", &[]), "missing.ota");
}

#[test]
fn usage_errors_exit_2() {
    let f = Fixture::new();
    usage_error(["sign", "--key", "k.pem"], "required");
    usage_error(["frobnicate"], "unrecognized subcommand");
    usage_error(["verify", f.path("fw.ota").to_str().unwrap()], "--pubkey");
    for (flag, value, fragment) in [
        ("--version", "1.2", "MAJOR.MINOR.PATCH"),
        ("--hardware-id", "particle-electron", "at most 16"),
        ("--hardware-id", "0x1234", "32 hex digits"),
        ("--security-counter", "4294967296", "--security-counter"),
        ("--security-counter", "three", "invalid digit"),
        ("--chunk-size", "1k", "--chunk-size"),
        ("--base-digest", "abcd", "SHA-256"),
    ] {
        usage_error(f.sign_args("key", "x.ota", &[flag, value]), fragment);
    }
    assert!(!f.path("x.ota").exists());
}

fn have_openssl() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("note: openssl not on PATH, skipping the OpenSSL interoperability test");
    }
    found
}

fn openssl(args: &[&OsStr]) -> Vec<u8> {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn os(p: &Path) -> &OsStr {
    p.as_os_str()
}

#[test]
fn openssl_interop() {
    if !have_openssl() {
        return;
    }
    let f = Fixture::new();
    let o = |s: &'static str| OsStr::new(s);

    // An OpenSSL key signs; its OpenSSL public key verifies.
    let osk = f.path("ossl.pem");
    let opk = f.path("ossl.pub.pem");
    openssl(&[
        o("genpkey"),
        o("-algorithm"),
        o("ed25519"),
        o("-out"),
        os(&osk),
    ]);
    openssl(&[
        o("pkey"),
        o("-in"),
        os(&osk),
        o("-pubout"),
        o("-out"),
        os(&opk),
    ]);
    f.sign("ossl", "ossl.ota", &[]);
    ok(f.verify_args(&["ossl"], "ossl.ota", &[]));
    fails(f.verify_args(&["key"], "ossl.ota", &[]), "unknown key id");

    // Our key files are accepted by OpenSSL, which derives the same public key PEM.
    let derived = openssl(&[o("pkey"), o("-in"), os(&f.path("key.pem")), o("-pubout")]);
    assert_eq!(derived, f.bytes("key.pub.pem"));
    // OpenSSL reads our public key file and writes it back unchanged.
    let reread = openssl(&[o("pkey"), o("-pubin"), o("-in"), os(&f.path("key.pub.pem"))]);
    assert_eq!(reread, f.bytes("key.pub.pem"));

    // OpenSSL checks the manifest signature independently: Ed25519 over every manifest byte
    // before the last 64.
    let c = f.bytes("fw.ota");
    let m = f.manifest_len();
    fs::write(f.path("signed.bin"), &c[16..16 + m - 64]).unwrap();
    fs::write(f.path("sig.bin"), &c[16 + m - 64..16 + m]).unwrap();
    let out = openssl(&[
        o("pkeyutl"),
        o("-verify"),
        o("-pubin"),
        o("-inkey"),
        os(&f.path("key.pub.pem")),
        o("-rawin"),
        o("-in"),
        os(&f.path("signed.bin")),
        o("-sigfile"),
        os(&f.path("sig.bin")),
    ]);
    assert!(
        String::from_utf8_lossy(&out).contains("Signature Verified Successfully"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

/// `sign` never writes its output over its own input, however the path is spelled.
#[test]
fn sign_refuses_to_overwrite_the_image_or_the_key() {
    let f = Fixture::new();
    let image = f.bytes("fw.bin");
    let key = f.bytes("key.pem");
    let dir = f.dir.path().to_str().unwrap().to_owned();
    let mut outs = vec![
        format!("{dir}/fw.bin"),
        format!("{dir}/./fw.bin"),
        format!(
            "{dir}/../{}/fw.bin",
            f.dir.path().file_name().unwrap().to_str().unwrap()
        ),
    ];
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(f.path("fw.bin"), f.path("link.bin")).unwrap();
        fs::hard_link(f.path("fw.bin"), f.path("hard.bin")).unwrap();
        outs.push(format!("{dir}/link.bin"));
        outs.push(format!("{dir}/hard.bin"));
    }
    for out in &outs {
        let mut args = f.sign_args("key", "x.ota", &[]);
        let at = args.iter().position(|a| a == "--out").unwrap();
        args[at + 1] = out.clone();
        fails(args, "is the image");
        assert_eq!(f.bytes("fw.bin"), image, "--out {out}");
    }
    let mut args = f.sign_args("key", "x.ota", &[]);
    let at = args.iter().position(|a| a == "--out").unwrap();
    args[at + 1] = format!("{dir}/./key.pem");
    fails(args, "is the signing key");
    assert_eq!(f.bytes("key.pem"), key);
    // Replacing an earlier container is still allowed.
    f.sign("key", "fw.ota", &["--security-counter", "4"]);
    assert_eq!(f.inspect_json("fw.ota")["security_counter"], 4);
    // An all-zero base digest names no image (docs/image-format.md 1.4 step 1).
    let zero = "00".repeat(32);
    fails(
        f.sign_args("key", "x.ota", &["--base-digest", &zero]),
        "base digest is all zero",
    );
    assert!(!f.path("x.ota").exists());
}

/// What a server sends in an offer is the bare manifest: `inspect` and `verify` take it and
/// say so.
#[test]
fn inspect_and_verify_take_a_bare_manifest() {
    let f = Fixture::new();
    let m = f.manifest_len();
    let manifest = f.bytes("fw.ota")[16..16 + m].to_vec();
    fs::write(f.path("fw.manifest"), &manifest).unwrap();

    let out = ok(["inspect", f.path("fw.manifest").to_str().unwrap()]);
    assert!(out.starts_with("this is a manifest"), "{out}");
    assert!(!out.contains("container version"), "{out}");
    let container = ok(["inspect", f.path("fw.ota").to_str().unwrap()]);
    // The same fields as for the container it came from.
    for line in container.lines().skip(1) {
        assert!(out.contains(line), "{line:?} missing from\n{out}");
    }
    let j = f.inspect_json("fw.manifest");
    assert_eq!(j["kind"], "manifest");
    assert!(j.get("container_version").is_none());
    assert_eq!(j["image_size"], IMAGE_LEN);
    assert_eq!(j["manifest_len"], m);
    assert_eq!(f.inspect_json("fw.ota")["kind"], "container");

    // verify checks the signature and the policy; there is no image to check.
    let out = ok(f.verify_args(&["key"], "fw.manifest", &[]));
    assert_eq!(
        out,
        format!("OK manifest 1.2.3 counter 3 {IMAGE_LEN} bytes (signature verified; no image)\n")
    );
    ok(f.verify_args(
        &["key"],
        "fw.manifest",
        &["--hardware-id", "electron-u260", "--min-counter", "3"],
    ));
    fails(
        f.verify_args(&["key"], "fw.manifest", &["--hardware-id", "boron"]),
        "wrong hardware",
    );
    fails(
        f.verify_args(&["key"], "fw.manifest", &["--min-counter", "4"]),
        "below the minimum",
    );
    f.keygen("other");
    fails(
        f.verify_args(&["other"], "fw.manifest", &[]),
        "unknown key id",
    );
    let mut bad = manifest.clone();
    bad[40] ^= 1;
    fs::write(f.path("bad.manifest"), &bad).unwrap();
    fails(
        f.verify_args(&["key"], "bad.manifest", &[]),
        "bad signature",
    );
    ok(["inspect", f.path("bad.manifest").to_str().unwrap()]);
    // A truncated manifest is malformed, not "bad magic".
    fs::write(f.path("short.manifest"), &manifest[..m - 1]).unwrap();
    fails(
        ["inspect", f.path("short.manifest").to_str().unwrap()],
        "malformed manifest: manifest is truncated",
    );
    fails(
        f.verify_args(&["key"], "short.manifest", &[]),
        "malformed manifest",
    );
    // Neither magic: the error names both.
    fs::write(f.path("fw.bin.copy"), f.bytes("fw.bin")).unwrap();
    fails(
        ["inspect", f.path("fw.bin.copy").to_str().unwrap()],
        "neither an update container (OTAC) nor a manifest (OTAM)",
    );
}
