//! The worked examples of `docs/image-format.md` are what the code produces and accepts.

use ota_core::{build_signed, ImageParams, Manifest};
use ota_core::{
    check_signature, verify, HardwareId, ImageSummary, Layout, Phase, Policy, SecurityCounter,
    Sha256Digest, TrustedKey, UpdateResult, VerifyError, Version,
};
use ota_core::{Persisted, RECORD_LEN};

const DOC: &str = include_str!("../../docs/image-format.md");

fn doc_hex(tag: &str) -> Vec<u8> {
    let begin = format!("<!-- {tag}-begin -->");
    let end = format!("<!-- {tag}-end -->");
    let s = DOC
        .split(&begin)
        .nth(1)
        .expect("begin marker")
        .split(&end)
        .next()
        .expect("end marker");
    // Only lines made of hex groups count (the fence lines around them do not).
    let hex: String = s
        .lines()
        .filter(|l| !l.trim().is_empty() && l.chars().all(|c| c.is_ascii_hexdigit() || c == ' '))
        .flat_map(|l| l.chars().filter(|c| *c != ' '))
        .collect();
    hex::decode(hex).expect("hex in the doc")
}

fn example() -> Vec<u8> {
    let seed =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
    let key =
        ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed.try_into().unwrap()));
    let image: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
    let params = ImageParams {
        hardware_id: HardwareId::from_name("electron-u260").unwrap(),
        version: Version::new(1, 2, 0),
        security_counter: SecurityCounter(3),
        chunk_size: 256,
        base_digest: None,
    };
    let mut out = [0u8; 232];
    assert_eq!(build_signed(&params, &image, &key, &mut out), Ok(232));
    out.to_vec()
}

#[test]
fn doc_manifest_example_matches_the_code() {
    let built = example();
    let doc = doc_hex("manifest-example");
    if doc != built {
        // Print the hex so a deliberate format change can update the document.
        for line in built.chunks(16) {
            println!("{}", hex::encode(line));
        }
        panic!("docs/image-format.md example differs from build_signed output");
    }
    let pk =
        hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").unwrap();
    let keys = [TrustedKey::new(pk.try_into().unwrap())];
    let policy = Policy {
        hardware_id: HardwareId::from_name("electron-u260").unwrap(),
        stored_counter: SecurityCounter(3),
        capacity: 600,
        allow_downgrade: false,
    };
    let v = verify(&doc, &keys, &policy).unwrap();
    let image: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(v.header().image_digest, Sha256Digest::of(&image));
    assert_eq!(Manifest::parse(&doc).unwrap().header().chunk_count(), 3);
}

/// Section 4's example: the record an Electron writes after the first swap stage of installing
/// the image of section 1.5 over a provisioned factory image (that image's first 400 bytes,
/// version 1.1.0, counter 2).
fn state_example() -> Persisted {
    let image: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
    Persisted {
        seq: 42,
        phase: Phase::Installing,
        result: UpdateResult::Initial,
        boot_attempts: 0,
        bit_markers: false,
        security_counter: SecurityCounter(2),
        active: Some(ImageSummary {
            version: Version::new(1, 1, 0),
            security_counter: SecurityCounter(2),
            size: 400,
            digest: Sha256Digest::of(&image[..400]),
        }),
        staged: Some(ImageSummary {
            version: Version::new(1, 2, 0),
            security_counter: SecurityCounter(3),
            size: 600,
            digest: Sha256Digest::of(&image),
        }),
        manifest_digest: Sha256Digest::of(&example()),
        manifest_len: 232,
        swap_len: 0x2_0000,
        swap_step: 1,
        repair_sector: None,
        repair_restoring: false,
        layout_id: Layout::ELECTRON.id(4),
    }
}

#[test]
fn doc_state_record_example_matches_the_code() {
    let mut built = [0u8; RECORD_LEN];
    state_example().encode(&mut built);
    let doc = doc_hex("state-example");
    if doc != built {
        for line in built.chunks(16) {
            let groups: Vec<String> = line.chunks(4).map(hex::encode).collect();
            println!("{}", groups.join(" "));
        }
        panic!("docs/image-format.md state record example differs from Persisted::encode");
    }
    let rec: [u8; RECORD_LEN] = doc.try_into().unwrap();
    assert_eq!(Persisted::decode(&rec), Some(state_example()));
}

/// One Ed25519 vector of section 1.6: the device's verdict, the key, the message, the signature.
struct SigVector {
    number: u32,
    accept: bool,
    what: String,
    key: [u8; 32],
    message: Vec<u8>,
    signature: [u8; 64],
}

fn doc_sig_vectors() -> Vec<SigVector> {
    let body = DOC
        .split("<!-- ed25519-vectors-begin -->")
        .nth(1)
        .expect("begin marker")
        .split("<!-- ed25519-vectors-end -->")
        .next()
        .expect("end marker");
    let mut out = Vec::new();
    let mut lines = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("```"));
    while let Some(head) = lines.next() {
        let mut words = head.splitn(3, ' ');
        let number = words.next().unwrap().parse().expect("vector number");
        let accept = match words.next() {
            Some("accept") => true,
            Some("refuse") => false,
            v => panic!("vector {number}: verdict {v:?}"),
        };
        let what = words.next().unwrap_or("").to_owned();
        let mut field = |tag: &str| {
            let l = lines.next().expect("field line");
            let hex = l
                .strip_prefix(tag)
                .unwrap_or_else(|| panic!("vector {number}: {l:?} is not {tag}"));
            hex::decode(hex.trim()).expect("hex")
        };
        let key = field("A ").try_into().expect("32-byte key");
        let message = field("M ");
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&field("R "));
        signature[32..].copy_from_slice(&field("S "));
        out.push(SigVector {
            number,
            accept,
            what,
            key,
            message,
            signature,
        });
    }
    out
}

/// Section 1.6: every edge-case vector gets the verdict the document states.
#[test]
fn doc_ed25519_vectors_give_the_stated_verdicts() {
    let vectors = doc_sig_vectors();
    assert_eq!(
        vectors.iter().map(|v| v.number).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    for v in &vectors {
        let got = check_signature(&v.key, &v.message, &v.signature);
        let want = if v.accept {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        };
        assert_eq!(got, want, "vector {} ({})", v.number, v.what);
        if v.accept {
            // An accepted vector is bound to its message.
            let mut other = v.message.clone();
            other[0] ^= 1;
            assert_eq!(
                check_signature(&v.key, &other, &v.signature),
                Err(VerifyError::BadSignature),
                "vector {} with another message",
                v.number
            );
        }
    }
    // Vector 1 is what our signer makes with the section 1.5 key: the generator of the
    // vectors and the crate agree on key, nonce and k.
    let seed =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
    let kp =
        ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed.try_into().unwrap()));
    assert_eq!(*kp.pk, vectors[0].key);
    assert_eq!(*kp.sk.sign(&vectors[0].message, None), vectors[0].signature);
}

/// Section 4.2's example: the bytes the Electron layout's id hashes, and the id.
#[test]
fn doc_layout_id_example_matches_the_code() {
    let l = Layout::ELECTRON;
    let mut want = Vec::new();
    let mut put = |v: u32| want.extend_from_slice(&v.to_le_bytes());
    put(4);
    for r in [l.state, l.progress, l.active, l.staging, l.scratch] {
        put(r.start);
        put(r.end);
    }
    for (count, size) in [(4, 16384), (1, 65536), (7, 131072)] {
        put(count);
        put(size);
    }
    assert_eq!(doc_hex("layout-id-example"), want);
    let id = l.id(4);
    assert_eq!(id.0[..], Sha256Digest::of(&want).0[..8]);
    assert!(DOC.contains(&format!("to an id of `{}`", hex::encode(id.0))));
}
