//! The worked examples of `docs/protocol.md` are exactly what the code produces, and the code
//! accepts them.

mod common;

use cloud_proto::stream::{encode, encoded_max};
use cloud_proto::*;
use common::*;

const DOC: &str = include_str!("../../docs/protocol.md");

/// The hex between `<!-- tag-begin -->` and `<!-- tag-end -->` in the doc.
fn doc_hex(tag: &str) -> Vec<u8> {
    let begin = format!("<!-- {tag}-begin -->");
    let end = format!("<!-- {tag}-end -->");
    let s = DOC
        .split(&begin)
        .nth(1)
        .unwrap_or_else(|| panic!("{begin} missing from docs/protocol.md"))
        .split(&end)
        .next()
        .unwrap();
    let hex: String = s
        .lines()
        .filter(|l| !l.trim().is_empty() && l.chars().all(|c| c.is_ascii_hexdigit() || c == ' '))
        .flat_map(|l| l.chars().filter(|c| *c != ' '))
        .collect();
    hex::decode(hex).expect("hex")
}

fn check(tag: &str, built: &[u8]) {
    let doc = doc_hex(tag);
    if doc != built {
        println!("<!-- {tag}-begin -->\n```text");
        for l in built.chunks(16) {
            let words: Vec<String> = l.chunks(4).map(hex::encode).collect();
            println!("{}", words.join(" "));
        }
        println!("```\n<!-- {tag}-end -->");
        panic!("docs/protocol.md example {tag} differs from the code (printed above)");
    }
}

fn publish_checkin(data: &[u8]) -> Up<'_> {
    let Up::CheckIn(mut c) = checkin() else {
        unreachable!()
    };
    c.publishes.push(Publish { topic: 1, data }).unwrap();
    Up::CheckIn(c)
}

fn offer_welcome() -> Down<'static> {
    welcome(Some(UpdateOffer {
        update: UpdateId(7),
        version: FirmwareVersion {
            major: 1,
            minor: 3,
            patch: 0,
        },
        image_size: 262_144,
        manifest: ManifestRef::Fetch { len: 8376 },
    }))
}

fn seal_up(counter: u32, msg: &Up<'_>) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = frame::seal_up(&keys(), DEVICE, counter, msg, &mut out).unwrap();
    out[..n].to_vec()
}

fn seal_down(echo: u32, msg: &Down<'_>) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = frame::seal_down(&keys(), DEVICE, echo, msg, &mut out).unwrap();
    out[..n].to_vec()
}

fn opens_up(tag: &str, counter: u32, msg: Up<'_>) {
    let f = doc_hex(tag);
    let up = frame::open_up(&keys(), &f).unwrap();
    assert_eq!(
        (up.device, up.counter, up.msg),
        (DEVICE, counter, msg),
        "{tag}"
    );
}

fn opens_down(tag: &str, echo: u32, msg: Down<'_>) {
    let f = doc_hex(tag);
    let d = frame::open_down(&keys(), DEVICE, &f, |l| (l == echo as u16).then_some(echo)).unwrap();
    assert_eq!(d, DownFrame::Message { echo, msg }, "{tag}");
}

#[test]
fn derived_keys() {
    // The doc lists both derived keys of the example root key.
    let k = doc_hex("keys");
    let (up, down) = k.split_at(32);
    use hmac::{Hmac, KeyInit, Mac};
    for (label, want) in [
        (&b"cloud-proto/1 up"[..], up),
        (b"cloud-proto/1 down", down),
    ] {
        let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&ROOT_KEY).unwrap();
        m.update(label);
        assert_eq!(&m.finalize().into_bytes()[..], want);
    }
}

#[test]
fn checkin_nothing_pending() {
    check("checkin", &seal_up(5, &checkin()));
    opens_up("checkin", 5, checkin());
    check("welcome", &seal_down(5, &welcome(None)));
    opens_down("welcome", 5, welcome(None));
}

#[test]
fn checkin_with_a_publish() {
    let data: Vec<u8> = (0..20).collect();
    check("checkin-publish", &seal_up(6, &publish_checkin(&data)));
    opens_up("checkin-publish", 6, publish_checkin(&data));
}

#[test]
fn offer_accept_and_chunks() {
    check("welcome-offer", &seal_down(6, &offer_welcome()));
    opens_down("welcome-offer", 6, offer_welcome());

    let accept = Up::UpdateDecision(UpdateDecision {
        update: UpdateId(7),
        decision: Decision::Accept { bytes_done: 51_200 },
    });
    check("accept", &seal_up(7, &accept));
    opens_up("accept", 7, accept);

    let req = ChunkRequest::plan(UpdateId(7), Object::Image, 512, 100..116, 64).unwrap();
    check("chunk-request", &seal_up(8, &Up::ChunkRequest(req.clone())));
    opens_up("chunk-request", 8, Up::ChunkRequest(req));

    let data = [0u8, 1, 2, 3, 4, 5, 6, 7];
    let mut out = [0u8; MAX_FRAME];
    let n = frame::seal_chunk(&keys(), DEVICE, 8, 3, &data, &mut out).unwrap();
    check("chunk", &out[..n]);
    let f = doc_hex("chunk");
    assert_eq!(
        frame::open_down(&keys(), DEVICE, &f, |l| (l == 8).then_some(8)).unwrap(),
        DownFrame::Chunk {
            echo: 8,
            slot: 3,
            data: &data
        }
    );
}

#[test]
fn on_a_byte_stream() {
    let f = seal_up(5, &checkin());
    let mut enc = vec![0u8; encoded_max(f.len())];
    let n = encode(&f, &mut enc).unwrap();
    check("stream", &enc[..n]);
}
