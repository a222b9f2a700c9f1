//! Offer → decision: every rejection, key rotation, RFC 8032 vectors through our verifier.

mod common;

use common::*;
use ota_core::{
    check_signature, verify, HardwareId, ParseError, Policy, SecurityCounter, TrustedKey,
    VerifyError, Version,
};
use ota_core::{KeyError, Manifest, MANIFEST_HEADER_LEN as HEADER_LEN};

fn policy() -> Policy {
    Policy {
        hardware_id: hw(),
        stored_counter: SecurityCounter(5),
        capacity: 8192,
        allow_downgrade: false,
    }
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// RFC 8032 section 7.1, tests 1–3 and "SHA(abc)".
const RFC8032: [(&str, &str, &str, &str); 4] = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
];

#[test]
fn rfc8032_vectors_through_the_verifier() {
    for (sk, pk, msg, sig) in RFC8032 {
        let pk: [u8; 32] = h(pk).try_into().unwrap();
        let sig: [u8; 64] = h(sig).try_into().unwrap();
        let msg = h(msg);
        assert_eq!(check_signature(&pk, &msg, &sig), Ok(()));
        // Our signing path (used by build_signed) reproduces the vector bit for bit.
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(
            h(sk).try_into().unwrap(),
        ));
        assert_eq!(*kp.pk, pk);
        assert_eq!(*kp.sk.sign(&msg, None), sig);
        // Any change to message or signature is refused.
        let mut bad = msg.clone();
        bad.push(0);
        assert_eq!(
            check_signature(&pk, &bad, &sig),
            Err(VerifyError::BadSignature)
        );
        let mut bad_sig = sig;
        bad_sig[10] ^= 1;
        assert_eq!(
            check_signature(&pk, &msg, &bad_sig),
            Err(VerifyError::BadSignature)
        );
    }
}

/// The eight points of small order, canonically encoded: [i]T8 for i = 0..8, T8 of order 8
/// (orders 1, 8, 4, 8, 2, 8, 4, 8).
const SMALL_ORDER: [&str; 8] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
];

/// Encodings that RFC 8032 decoding refuses: y ≥ p (y = p and y = p + 1, each sign), x = 0
/// with the sign bit set (identity and (0, -1)), and a y with no point (y = 2).
const NOT_CANONICAL_OR_OFF_CURVE: [&str; 7] = [
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "0100000000000000000000000000000000000000000000000000000000000080",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "0200000000000000000000000000000000000000000000000000000000000000",
];

fn key32(s: &str) -> [u8; 32] {
    h(s).try_into().unwrap()
}

/// 256-bit little-endian `a + b`, `None` on overflow.
fn add_le(a: &[u8], b: &[u8; 32]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    (carry == 0).then_some(out)
}

/// Section 1.3 steps 1, 2-3 and 4-5, with vectors built here (section 1.6 has the ones that
/// need point arithmetic): S ≥ L, small-order and undecodable keys, small-order and
/// undecodable R.
#[test]
fn ed25519_rule_refusals() {
    const L: &str = "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010";
    let l = key32(L);
    let (_, pk, msg, sig) = RFC8032[2];
    let (pk, msg, sig): ([u8; 32], _, [u8; 64]) = (key32(pk), h(msg), h(sig).try_into().unwrap());
    assert_eq!(check_signature(&pk, &msg, &sig), Ok(()));
    // Step 1: S + L and S + 2L name the same scalar, but only S < L is accepted; so is
    // any S with its top bits set.
    let mut two_l = l;
    two_l = add_le(&two_l, &l).unwrap();
    for add in [l, two_l] {
        let mut bad = sig;
        bad[32..].copy_from_slice(&add_le(&sig[32..], &add).unwrap());
        assert_eq!(
            check_signature(&pk, &msg, &bad),
            Err(VerifyError::BadSignature)
        );
    }
    let mut bad = sig;
    bad[63] |= 0xe0;
    assert_eq!(
        check_signature(&pk, &msg, &bad),
        Err(VerifyError::BadSignature)
    );
    // Steps 2-3: under a small-order key, R = identity and S = 0 satisfy even the
    // cofactorless equation, for any message; and R = A with S = 0 the cofactored one.
    for a in SMALL_ORDER.iter().chain(&NOT_CANONICAL_OR_OFF_CURVE) {
        let a = key32(a);
        let mut forged = [0u8; 64];
        forged[0] = 1;
        assert_eq!(
            check_signature(&a, b"any message", &forged),
            Err(VerifyError::BadSignature),
            "key {}",
            hex::encode(a)
        );
        forged[..32].copy_from_slice(&a);
        assert_eq!(
            check_signature(&a, b"any message", &forged),
            Err(VerifyError::BadSignature)
        );
    }
    // Steps 4-5: R small order or not decodable, whatever S.
    for r in SMALL_ORDER.iter().chain(&NOT_CANONICAL_OR_OFF_CURVE) {
        let mut bad = sig;
        bad[..32].copy_from_slice(&key32(r));
        assert_eq!(
            check_signature(&pk, &msg, &bad),
            Err(VerifyError::BadSignature)
        );
    }
}

/// `TrustedKey::try_new` refuses what section 1.3 steps 2-3 refuse, with one error each.
#[test]
fn checked_key_constructor_refuses_small_order_and_undecodable_keys() {
    for a in SMALL_ORDER {
        assert_eq!(
            TrustedKey::try_new(key32(a)),
            Err(KeyError::SmallOrder),
            "key {a}"
        );
    }
    for a in NOT_CANONICAL_OR_OFF_CURVE {
        assert_eq!(
            TrustedKey::try_new(key32(a)),
            Err(KeyError::NotAPoint),
            "key {a}"
        );
    }
    for (_, pk, _, _) in RFC8032 {
        let k = TrustedKey::try_new(key32(pk)).unwrap();
        assert_eq!(k, TrustedKey::new(key32(pk)));
        assert_eq!(k.id(), ota_core::KeyId::of(&key32(pk)));
    }
    // Section 1.6: the keys of vectors 8 and 9 are refused; vector 10's key, a valid point
    // plus one of order 2, is not (only a scalar multiplication could tell).
    assert_eq!(
        TrustedKey::try_new(key32(SMALL_ORDER[0])),
        Err(KeyError::SmallOrder)
    );
    assert_eq!(
        TrustedKey::try_new(key32(
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
        )),
        Err(KeyError::NotAPoint)
    );
    assert!(TrustedKey::try_new(key32(
        "16a567fe7d4ef5482ab4012c369bf8c5f11e8d0c2559dcda50fde59708f8aee5"
    ))
    .is_ok());
    // Keys from key generation always pass.
    for seed in 1..=255u8 {
        assert!(
            TrustedKey::try_new(*keypair(seed).pk).is_ok(),
            "seed {seed}"
        );
    }
}

#[test]
fn accepts_a_good_manifest_with_either_rotated_key() {
    let s = sign_with(image(3000, 1), 2, Version::new(2, 0, 0), 6, 256, hw());
    let keys = trusted(&[1, 2]);
    let v = verify(&s.manifest, &keys, &policy()).unwrap();
    assert_eq!(v.header().version, Version::new(2, 0, 0));
    assert_eq!(v.header().image_size, 3000);
    // Only the old key: the manifest's key id is unknown.
    let err = verify(&s.manifest, &trusted(&[1]), &policy()).unwrap_err();
    assert!(matches!(err, VerifyError::UnknownKey(_)));
}

#[test]
fn every_rejection_is_distinct() {
    let keys = trusted(&[1]);
    let good = sign(3000, 1, 5);
    // Malformed: truncated, extended, bad magic.
    assert_eq!(
        verify(&good.manifest[..good.manifest.len() - 1], &keys, &policy()),
        Err(VerifyError::Malformed(ParseError::Truncated))
    );
    let mut ext = good.manifest.clone();
    ext.push(0);
    assert_eq!(
        verify(&ext, &keys, &policy()),
        Err(VerifyError::Malformed(ParseError::TrailingBytes))
    );
    // Bad signature: any bit of the signed part or the signature.
    for at in [HEADER_LEN + 3, 40, good.manifest.len() - 1] {
        let mut m = good.manifest.clone();
        m[at] ^= 0x01;
        assert_eq!(
            verify(&m, &keys, &policy()),
            Err(VerifyError::BadSignature),
            "byte {at}"
        );
    }
    // Wrong hardware.
    let other = sign_with(
        image(3000, 1),
        1,
        Version::new(1, 0, 0),
        5,
        256,
        HardwareId::from_name("other").unwrap(),
    );
    assert_eq!(
        verify(&other.manifest, &keys, &policy()),
        Err(VerifyError::WrongHardware)
    );
    // Downgrade, and its explicit development override.
    let old = sign(3000, 1, 4);
    assert_eq!(
        verify(&old.manifest, &keys, &policy()),
        Err(VerifyError::Downgrade {
            offered: SecurityCounter(4),
            stored: SecurityCounter(5)
        })
    );
    let dev = Policy {
        allow_downgrade: true,
        ..policy()
    };
    assert!(verify(&old.manifest, &keys, &dev).is_ok());
    // Equal counter is not a downgrade.
    assert!(verify(&good.manifest, &keys, &policy()).is_ok());
    // Too large for the slot.
    let big = sign(9000, 1, 5);
    assert_eq!(
        verify(&big.manifest, &keys, &policy()),
        Err(VerifyError::TooLarge {
            size: 9000,
            capacity: 8192
        })
    );
    // Every refusal maps to an LwM2M result a cloud understands.
    assert_eq!(VerifyError::BadSignature.update_result() as u8, 5);
    assert_eq!(
        VerifyError::TooLarge {
            size: 1,
            capacity: 0
        }
        .update_result() as u8,
        2
    );
    assert_eq!(VerifyError::WrongHardware.update_result() as u8, 6);
}

/// Re-signs `m` (a manifest signed by key 1) after `edit` changed its signed bytes, so a
/// structural rule is what refuses it, not the signature.
fn resigned(mut m: Vec<u8>, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let n = m.len() - 64;
    edit(&mut m[..n]);
    let sig = keypair(1).sk.sign(&m[..n], None);
    m[n..].copy_from_slice(&sig[..]);
    m
}

/// Section 1.4 step 1, rule by rule: each header rule on a correctly signed manifest.
#[test]
fn every_step_1_rule_is_enforced_on_signed_manifests() {
    let keys = trusted(&[1]);
    let good = sign(3000, 1, 5);
    assert!(verify(&good.manifest, &keys, &policy()).is_ok());
    let refused = |edit: &dyn Fn(&mut [u8])| {
        let m = resigned(good.manifest.clone(), |b| edit(b));
        match verify(&m, &keys, &policy()) {
            Err(VerifyError::Malformed(e)) => e,
            other => panic!("not refused as malformed: {other:?}"),
        }
    };
    assert_eq!(refused(&|b| b[0] = b'X'), ParseError::BadMagic);
    assert_eq!(refused(&|b| b[4] = 2), ParseError::UnsupportedVersion(2));
    // Flag bits 1-7 must be zero, each of them.
    for bit in 1..8 {
        assert_eq!(refused(&|b| b[5] = 1 << bit), ParseError::ReservedBitsSet);
    }
    for at in [6, 7, 38, 39] {
        assert_eq!(refused(&|b| b[at] = 1), ParseError::ReservedBitsSet);
    }
    // Flag bit 0 clear: the base digest must be all zero, every byte of it.
    for at in [88, 100, 119] {
        assert_eq!(refused(&|b| b[at] = 1), ParseError::ReservedBitsSet);
    }
    // Flag bit 0 set with an all-zero base digest: refused (a digest of no image).
    assert_eq!(refused(&|b| b[5] = 1), ParseError::ZeroBaseDigest);
    // Flag bit 0 set with any other base digest: accepted and reported.
    let with_base = resigned(good.manifest.clone(), |b| {
        b[5] = 1;
        b[119] = 0x80;
    });
    let v = verify(&with_base, &keys, &policy()).unwrap();
    let mut base = [0u8; 32];
    base[31] = 0x80;
    assert_eq!(v.header().base_digest, Some(ota_core::Sha256Digest(base)));
    // The builder refuses to write what the parser refuses to read.
    let params = ota_core::ImageParams {
        hardware_id: hw(),
        version: Version::new(1, 0, 0),
        security_counter: SecurityCounter(5),
        chunk_size: 256,
        base_digest: Some(ota_core::Sha256Digest([0; 32])),
    };
    assert_eq!(
        params.manifest_len(3000),
        Err(ota_core::BuildError::Invalid(ParseError::ZeroBaseDigest))
    );
    // Image size at least 1 (the chunk count 0 matches, so only this rule refuses it).
    assert_eq!(
        refused(&|b| {
            b[44..48].copy_from_slice(&0u32.to_le_bytes());
            b[52..56].copy_from_slice(&0u32.to_le_bytes());
        }),
        ParseError::EmptyImage
    );
    for cs in [0u32, 128, 300, 131072] {
        assert_eq!(
            refused(&|b| b[48..52].copy_from_slice(&cs.to_le_bytes())),
            ParseError::BadChunkSize,
            "chunk size {cs}"
        );
    }
    assert_eq!(
        refused(&|b| b[52..56].copy_from_slice(&13u32.to_le_bytes())),
        ParseError::ChunkCountMismatch
    );
}

#[test]
fn manifest_accessors() {
    let s = sign(1000, 3, 1);
    let m = Manifest::parse(&s.manifest).unwrap();
    assert_eq!(m.header().chunk_count(), 4);
    assert_eq!(
        m.chunk_digest(ota_core::ChunkIndex(3)),
        Some(ota_core::chunk_digest(s.chunk(3)))
    );
    assert_eq!(m.chunk_digest(ota_core::ChunkIndex(4)), None);
    assert_eq!(m.signed_bytes().len(), s.manifest.len() - 64);
}

mod props {
    use super::*;
    use ota_core::{KeyId, ManifestHeader, Sha256Digest};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Manifest::parse(&bytes);
            let _ = verify(&bytes, &trusted(&[1]), &policy());
        }

        #[test]
        fn parse_never_panics_on_valid_prefix(tail in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..400) {
            let s = sign(700, 1, 5);
            let mut b = s.manifest[..cut.min(s.manifest.len())].to_vec();
            b.extend_from_slice(&tail);
            let _ = Manifest::parse(&b);
        }

        #[test]
        fn header_round_trips(
            key in any::<[u8; 8]>(), hwid in any::<[u8; 16]>(), v in any::<(u16, u16, u16)>(),
            counter in any::<u32>(), size in 1u32..=u32::MAX, shift in 8u32..=16,
            digest in any::<[u8; 32]>(), base in proptest::option::of(any::<[u8; 32]>()),
        ) {
            let h = ManifestHeader {
                key_id: KeyId(key),
                hardware_id: HardwareId(hwid),
                version: Version::new(v.0, v.1, v.2),
                security_counter: SecurityCounter(counter),
                image_size: size,
                chunk_size: 1 << shift,
                image_digest: Sha256Digest(digest),
                base_digest: base.map(Sha256Digest),
            };
            let mut b = [0u8; HEADER_LEN];
            h.encode(&mut b);
            prop_assert_eq!(ManifestHeader::decode(&b), Ok(h));
        }

        #[test]
        fn no_single_byte_change_verifies(at in 0usize..(120 + 3 * 16 + 64), delta in 1u8..=255) {
            let s = sign(700, 1, 5);
            let mut m = s.manifest.clone();
            m[at] = m[at].wrapping_add(delta);
            prop_assert!(verify(&m, &trusted(&[1]), &policy()).is_err());
        }
    }
}
