//! The byte-stream framing against an oracle written straight from `docs/protocol.md` §2.5
//! (a `Vec`-based transcription, below): the same bytes for every frame, a clean `None` for
//! every output buffer too small, and the same verdict on every run of bytes between two
//! delimiters, valid COBS or not. Golden vectors: tests/golden.rs and tests/spec_figures.rs.
//!
//! These tests also decided against the `cobs` crate for the encoder: cobs 0.3.0 omits the
//! `01` block the spec puts after a final `FF` block (`edge_frames_encode_as_before` failed
//! on a 254-byte frame), see src/stream.rs.

use cloud_proto::*;
use proptest::prelude::*;

/// §2.5's encoder: blocks of `code ‖ code − 1 bytes`, a `01` after a final `FF` block, `00`.
fn reference_encode(frame: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    let mut code_at = 0;
    let mut code: u8 = 1;
    for &b in frame {
        if b == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xFF {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
    out.push(0);
    out
}

/// §2.5's decoder of the bytes between two delimiters (none of them zero).
fn reference_decode(data: &[u8]) -> Option<Vec<u8>> {
    let (mut r, mut out) = (0, Vec::new());
    while r < data.len() {
        let code = data[r] as usize;
        if code == 0 || r + code > data.len() {
            return None;
        }
        out.extend_from_slice(&data[r + 1..r + code]);
        r += code;
        if code < 0xFF && r < data.len() {
            out.push(0);
        }
    }
    Some(out)
}

/// Bytes with many zeros and long zero-free runs, the cases COBS treats specially.
fn frame_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![3 => Just(0u8), 10 => 1u8..=255, 1 => Just(0xFFu8)],
        0..max,
    )
}

#[test]
fn edge_frames_encode_as_before() {
    let mut cases: Vec<Vec<u8>> = vec![vec![], vec![0], vec![0; 600], vec![1; 253], vec![1; 254]];
    cases.extend([vec![1; 255], vec![1; 508], vec![1; 509], vec![1; MAX_FRAME]]);
    let mut with_zero = vec![1u8; 254];
    with_zero.push(0);
    cases.push(with_zero);
    for f in cases {
        let mut out = vec![0xAA; stream_encoded_max(f.len())];
        let n = stream_encode(&f, &mut out).unwrap();
        assert_eq!(&out[..n], &reference_encode(&f)[..], "{} bytes", f.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encoding_is_byte_for_byte_the_reference(f in frame_bytes(1100), spare in 0usize..3) {
        let want = reference_encode(&f);
        // Every buffer size up to the one needed fails cleanly; from it on, the same bytes.
        for len in (0..want.len()).rev().take(4) {
            let mut out = vec![0xAA; len];
            prop_assert_eq!(stream_encode(&f, &mut out), None, "len {}", len);
        }
        let mut out = vec![0xAA; want.len() + spare];
        let n = stream_encode(&f, &mut out);
        prop_assert_eq!(n, Some(want.len()));
        prop_assert_eq!(&out[..want.len()], &want[..]);
        prop_assert!(want.len() <= stream_encoded_max(f.len()));
    }

    #[test]
    fn decoding_matches_the_reference_on_any_bytes(
        data in prop::collection::vec(1u8..=255, 1..1100),
    ) {
        let mut dec = StreamDecoder::<1100>::new();
        let (used, got) = dec.feed(&data);
        prop_assert_eq!((used, got), (data.len(), None));
        let (used, got) = dec.feed(&[0]);
        prop_assert_eq!(used, 1);
        let got = got.map(|r| r.map(|f| f.to_vec()));
        let want = reference_decode(&data).ok_or(StreamError::Invalid);
        prop_assert_eq!(got, Some(want));
    }

    #[test]
    fn encoded_frames_decode_back(f in frame_bytes(1100)) {
        let mut out = vec![0u8; stream_encoded_max(f.len())];
        let n = stream_encode(&f, &mut out).unwrap();
        let mut dec = StreamDecoder::<{ stream_encoded_max(1100) }>::new();
        let (used, got) = dec.feed(&out[..n]);
        prop_assert_eq!(used, n);
        prop_assert_eq!(got.map(|r| r.map(|f| f.to_vec())), Some(Ok(f)));
    }
}
