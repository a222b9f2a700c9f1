//! The worked example of `docs/image-format.md` is what the code produces and accepts.

use ota_core::manifest::{build_signed, ImageParams, Manifest};
use ota_core::{verify, HardwareId, Policy, SecurityCounter, Sha256Digest, TrustedKey, Version};

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
