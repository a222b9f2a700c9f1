//! `ota-tool`: key generation, signing, verification and inspection of ota-core update
//! containers. See README.md for the commands and the container layout.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ota_core::ImageParams;
use ota_core::{HardwareId, Manifest, ManifestHeader, SecurityCounter, Sha256Digest, Version};
use ota_tool::container::{check_container, check_manifest, Container, ContainerError};
use ota_tool::keys;
use ota_tool::text::{
    format_hardware_id, hardware_id_hex, key_id_hex, parse_hardware_id, parse_sha256, parse_version,
};

/// Keys, signing, verification and inspection of ota-core update containers (.ota files).
///
/// Every failure exits with status 1 and one line on stderr starting with "error: "
/// (usage errors: status 2).
#[derive(Parser, Debug)]
#[command(name = "ota-tool", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Keygen(KeygenArgs),
    Sign(SignArgs),
    Verify(VerifyArgs),
    Inspect(InspectArgs),
}

/// Generate an Ed25519 signing key (PKCS#8 PEM, mode 0600, as `openssl genpkey -algorithm
/// ed25519` writes).
///
/// The public key (SubjectPublicKeyInfo PEM, as `openssl pkey -pubout` writes) goes to
/// --pub-out, or to standard output without it.
#[derive(Args, Debug)]
struct KeygenArgs {
    /// Private key file to create.
    #[arg(long, value_name = "KEY.pem")]
    out: PathBuf,
    /// Public key file to create.
    #[arg(long, value_name = "PUB.pem")]
    pub_out: Option<PathBuf>,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

/// Sign a firmware image: write a container with its signed manifest and the image.
#[derive(Args, Debug)]
struct SignArgs {
    /// Private key (PKCS#8 PEM).
    #[arg(long, value_name = "KEY.pem")]
    key: PathBuf,
    /// Firmware image (raw binary).
    #[arg(long, value_name = "FW.bin")]
    image: PathBuf,
    /// Image version, MAJOR.MINOR.PATCH.
    #[arg(long, value_name = "X.Y.Z", value_parser = parse_version)]
    version: Version,
    /// Anti-rollback counter (0..=4294967295); devices refuse images below their stored one.
    #[arg(long, value_name = "N")]
    security_counter: u32,
    /// Target hardware: a name of at most 16 bytes, or 0x followed by 32 hex digits.
    #[arg(long, value_name = "NAME|0xHEX", value_parser = parse_hardware_id)]
    hardware_id: HardwareId,
    /// Chunk size in bytes: a power of two from 256 to 65536.
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    chunk_size: u32,
    /// SHA-256 (64 hex digits) of the base image, for a delta update.
    #[arg(long, value_name = "SHA256", value_parser = parse_sha256)]
    base_digest: Option<Sha256Digest>,
    /// Container file to write (replaced if it exists, unless it is the image or the key).
    #[arg(long, value_name = "FW.ota")]
    out: PathBuf,
}

/// Verify a container: signature, image against the manifest, and optional device policy.
///
/// Prints "OK <version> counter <n> <size> bytes" and exits 0 when every check passes. Given a
/// bare manifest (what a server sends in an offer), checks its signature and the policy and
/// prints "OK manifest <version> counter <n> <size> bytes (signature verified; no image)".
#[derive(Args, Debug)]
struct VerifyArgs {
    /// Trusted public key (SubjectPublicKeyInfo PEM); repeat to trust several (key rotation).
    #[arg(long = "pubkey", value_name = "PUB.pem", required = true)]
    pubkeys: Vec<PathBuf>,
    /// Require this hardware id (name or 0x + 32 hex digits).
    #[arg(long, value_name = "NAME|0xHEX", value_parser = parse_hardware_id)]
    hardware_id: Option<HardwareId>,
    /// Require a security counter of at least N (a device's stored counter).
    #[arg(long, value_name = "N")]
    min_counter: Option<u32>,
    /// Container file, or a bare manifest.
    #[arg(value_name = "FW.ota")]
    file: PathBuf,
}

/// Show every manifest field of a container or a bare manifest. Does NOT verify the signature.
///
/// Neither the signature nor the image digests are checked (use `verify` for that); inspect
/// fails only on a malformed container or manifest.
#[derive(Args, Debug)]
struct InspectArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Container file, or a bare manifest.
    #[arg(value_name = "FW.ota")]
    file: PathBuf,
}

/// A failure: printed as one line after "error: ".
#[derive(Debug)]
struct Error(String);

type Result<T> = std::result::Result<T, Error>;

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Error(chain(&e))
    }
}

/// An error and its `source()` chain as "outer: inner: …": the library errors do not repeat
/// their source in their own message.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        next = s.source();
    }
    msg
}

fn fail(msg: impl Into<String>) -> Error {
    Error(msg.into())
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| fail(format!("{}: {e}", path.display())))
}

/// What a file given to `verify` or `inspect` holds.
enum Input {
    /// An update container (`OTAC`): manifest and image.
    Container(Container),
    /// A bare manifest (`OTAM`), as a server sends it in an offer: no image.
    Manifest(Vec<u8>),
}

fn read_input(path: &Path) -> Result<Input> {
    let bytes = read_file(path)?;
    if bytes.starts_with(&ota_core::MANIFEST_MAGIC) {
        return Ok(Input::Manifest(bytes));
    }
    match Container::decode(&bytes) {
        Ok(c) => Ok(Input::Container(c)),
        Err(ContainerError::BadMagic) => Err(fail(format!(
            "{}: neither an update container (OTAC) nor a manifest (OTAM): bad magic",
            path.display()
        ))),
        Err(e) => Err(fail(format!("{}: {e}", path.display()))),
    }
}

/// Whether `a` and `b` name the same existing file (through `.`, `..`, symbolic or hard
/// links).
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (fs::metadata(a), fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!(
            (fs::canonicalize(a), fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
    }
}

fn keygen(a: &KeygenArgs, out: &mut dyn Write) -> Result<()> {
    if a.pub_out.as_deref() == Some(a.out.as_path()) {
        return Err(fail("--out and --pub-out name the same file"));
    }
    if !a.force {
        // Refuse before writing anything, so a refusal leaves no half-made key pair.
        for p in std::iter::once(&a.out).chain(a.pub_out.as_ref()) {
            if p.exists() {
                return Err(fail(format!(
                    "{} exists (use --force to overwrite)",
                    p.display()
                )));
            }
        }
    }
    let kp = keys::generate();
    keys::write_private_key(&a.out, &kp, a.force)?;
    let id = key_id_hex(&keys::key_id(&kp.pk));
    match &a.pub_out {
        Some(p) => {
            keys::write_public_key(p, &kp.pk, a.force)?;
            writeln!(
                out,
                "key id {id}: private key {} (mode 0600), public key {}",
                a.out.display(),
                p.display()
            )?;
        }
        None => out.write_all(keys::public_key_to_pem(&kp.pk).as_bytes())?,
    }
    Ok(())
}

fn sign(a: &SignArgs, out: &mut dyn Write) -> Result<()> {
    // Refuse before reading anything: the container would replace the firmware or the key.
    for (input, what) in [(&a.image, "the image"), (&a.key, "the signing key")] {
        if same_file(&a.out, input) {
            return Err(fail(format!(
                "--out {} is {what} {}: refusing to overwrite it",
                a.out.display(),
                input.display()
            )));
        }
    }
    let kp = keys::read_private_key(&a.key)?;
    let image = read_file(&a.image)?;
    let params = ImageParams {
        hardware_id: a.hardware_id,
        version: a.version,
        security_counter: SecurityCounter(a.security_counter),
        chunk_size: a.chunk_size,
        base_digest: a.base_digest,
    };
    let c = Container::sign(&params, &image, &kp)
        .map_err(|e| fail(format!("{}: {}", a.image.display(), chain(&e))))?;
    // Check what was built the way `verify` will, before writing it.
    let h = check_container(&c, &[keys::trusted(&kp.pk)], None, None).map_err(|e| {
        fail(format!(
            "internal error, the signed container fails: {}",
            chain(&e)
        ))
    })?;
    fs::write(&a.out, c.encode()).map_err(|e| fail(format!("{}: {e}", a.out.display())))?;
    writeln!(
        out,
        "signed {}: version {} counter {} hardware {} {} bytes {} chunks of {} manifest {} \
         bytes key id {}",
        a.out.display(),
        h.version,
        h.security_counter.0,
        format_hardware_id(&h.hardware_id),
        h.image_size,
        h.chunk_count(),
        h.chunk_size,
        c.manifest.len(),
        key_id_hex(&h.key_id),
    )?;
    Ok(())
}

fn verify(a: &VerifyArgs, out: &mut dyn Write) -> Result<()> {
    let trusted = a
        .pubkeys
        .iter()
        .map(|p| keys::read_public_key(p).map(|k| keys::trusted(&k)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    match read_input(&a.file)? {
        Input::Container(c) => {
            let h = check_container(&c, &trusted, a.hardware_id, a.min_counter)?;
            writeln!(
                out,
                "OK {} counter {} {} bytes",
                h.version, h.security_counter.0, h.image_size
            )?;
        }
        Input::Manifest(m) => {
            let m = check_manifest(&m, &trusted, a.hardware_id, a.min_counter)?;
            let h = m.header();
            writeln!(
                out,
                "OK manifest {} counter {} {} bytes (signature verified; no image)",
                h.version, h.security_counter.0, h.image_size
            )?;
        }
    }
    Ok(())
}

/// Every manifest field `inspect` shows, in display order: (text label, JSON key, text value,
/// JSON value).
fn inspect_fields(
    m: &Manifest<'_>,
) -> Vec<(&'static str, &'static str, String, serde_json::Value)> {
    use serde_json::Value;
    let h: &ManifestHeader = m.header();
    let base = h.base_digest.map(|d| hex::encode(d.0));
    let hw_hex = hardware_id_hex(&h.hardware_id);
    vec![
        (
            "format",
            "format",
            m.as_bytes()[4].to_string(),
            Value::from(m.as_bytes()[4]),
        ),
        (
            "key id",
            "key_id",
            key_id_hex(&h.key_id),
            Value::from(key_id_hex(&h.key_id)),
        ),
        (
            "hardware id",
            "hardware_id",
            format_hardware_id(&h.hardware_id),
            Value::from(format_hardware_id(&h.hardware_id)),
        ),
        (
            "hardware id hex",
            "hardware_id_hex",
            hw_hex.clone(),
            Value::from(hw_hex),
        ),
        (
            "version",
            "version",
            h.version.to_string(),
            Value::from(h.version.to_string()),
        ),
        (
            "security counter",
            "security_counter",
            h.security_counter.0.to_string(),
            Value::from(h.security_counter.0),
        ),
        (
            "image size",
            "image_size",
            format!("{} bytes", h.image_size),
            Value::from(h.image_size),
        ),
        (
            "chunk size",
            "chunk_size",
            format!("{} bytes", h.chunk_size),
            Value::from(h.chunk_size),
        ),
        (
            "chunk count",
            "chunk_count",
            h.chunk_count().to_string(),
            Value::from(h.chunk_count()),
        ),
        (
            "image sha256",
            "image_sha256",
            hex::encode(h.image_digest.0),
            Value::from(hex::encode(h.image_digest.0)),
        ),
        (
            "base sha256",
            "base_sha256",
            base.clone().unwrap_or_else(|| "none".into()),
            base.map_or(Value::Null, Value::from),
        ),
        (
            "manifest length",
            "manifest_len",
            format!("{} bytes", m.as_bytes().len()),
            Value::from(m.as_bytes().len()),
        ),
        (
            "signature",
            "signature",
            hex::encode(m.signature()),
            Value::from(hex::encode(m.signature())),
        ),
    ]
}

fn inspect(a: &InspectArgs, out: &mut dyn Write) -> Result<()> {
    use serde_json::Value;
    let input = read_input(&a.file)?;
    let bytes = match &input {
        Input::Container(c) => &c.manifest,
        Input::Manifest(m) => m,
    };
    let m = Manifest::parse(bytes).map_err(|e| {
        fail(format!(
            "{}: malformed manifest: {}",
            a.file.display(),
            chain(&e)
        ))
    })?;
    let mut fields = inspect_fields(&m);
    let kind = match &input {
        Input::Container(c) => {
            let size = m.header().image_size;
            if c.image.len() as u64 != u64::from(size) {
                return Err(fail(format!(
                    "{}: the container's image is {} bytes but the manifest says {size}",
                    a.file.display(),
                    c.image.len()
                )));
            }
            let v = ota_tool::container::VERSION;
            fields.insert(
                0,
                (
                    "container version",
                    "container_version",
                    v.to_string(),
                    Value::from(v),
                ),
            );
            "container"
        }
        Input::Manifest(_) => "manifest",
    };
    if a.json {
        let obj: serde_json::Map<String, Value> = std::iter::once(("kind", Value::from(kind)))
            .chain(fields.into_iter().map(|(_, key, _, v)| (key, v)))
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        writeln!(out, "{}", Value::Object(obj))?;
    } else {
        if kind == "manifest" {
            writeln!(
                out,
                "this is a manifest (what a server sends in an offer), not a container: no image"
            )?;
        }
        for (label, _, text, _) in fields {
            writeln!(out, "{label:<18} {text}")?;
        }
        writeln!(
            out,
            "(not verified: inspect does not check the signature or the image; use verify)"
        )?;
    }
    Ok(())
}

fn run(cli: &Cli) -> Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match &cli.command {
        Command::Keygen(a) => keygen(a, &mut out),
        Command::Sign(a) => sign(a, &mut out),
        Command::Verify(a) => verify(a, &mut out),
        Command::Inspect(a) => inspect(a, &mut out),
    }?;
    out.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error(msg)) => {
            // Exactly one line, whatever the message holds.
            let line = msg.replace(['\r', '\n'], " ");
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sign_takes_its_own_version_flag() {
        let cli = Cli::try_parse_from([
            "ota-tool",
            "sign",
            "--key",
            "k",
            "--image",
            "i",
            "--version",
            "1.2.3",
            "--security-counter",
            "4",
            "--hardware-id",
            "boron",
            "--out",
            "o",
        ])
        .unwrap();
        let Command::Sign(a) = cli.command else {
            panic!("not sign")
        };
        assert_eq!(a.version, Version::new(1, 2, 3));
        assert_eq!(a.chunk_size, 1024);
        assert_eq!(a.base_digest, None);
        assert_eq!(a.hardware_id, HardwareId::from_name("boron").unwrap());
    }

    #[test]
    fn verify_needs_a_key() {
        assert!(Cli::try_parse_from(["ota-tool", "verify", "f.ota"]).is_err());
        let cli =
            Cli::try_parse_from(["ota-tool", "verify", "--pubkey", "a", "--pubkey", "b", "f"])
                .unwrap();
        let Command::Verify(a) = cli.command else {
            panic!("not verify")
        };
        assert_eq!(a.pubkeys.len(), 2);
    }
}
