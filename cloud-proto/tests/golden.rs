//! The worked examples of `docs/protocol.md` are exactly what the code produces, and the code
//! accepts them.

mod common;

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

/// The doc's bytes equal what the code built, and the doc's tag is the spec's HMAC computed
/// independently (tests/common), not only what the code produced.
fn check(tag: &str, built: &[u8]) {
    if let Some(up) = match built.first() {
        Some(0x10) => Some(true),
        Some(0x11 | 0x12) => Some(false),
        _ => None,
    } {
        let counter = if up {
            u32::from_le_bytes(built[5..9].try_into().unwrap())
        } else {
            u32::from(u16::from_le_bytes([built[1], built[2]]))
        };
        let (body, t) = built.split_at(built.len() - 8);
        assert_eq!(
            t,
            spec_tag(up, counter, body),
            "{tag}: tag is not the spec's HMAC"
        );
    }
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
    let n = cloud_proto::seal_up(&keys(), DEVICE, counter, msg, &mut out).unwrap();
    out[..n].to_vec()
}

fn seal_down(echo: u32, msg: &Down<'_>) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = cloud_proto::seal_down(&keys(), DEVICE, echo, msg, &mut out).unwrap();
    out[..n].to_vec()
}

fn opens_up(tag: &str, counter: u32, msg: Up<'_>) {
    let f = doc_hex(tag);
    let up = open_up(&keys(), &f).unwrap();
    assert_eq!(
        (up.device, up.counter, up.msg),
        (DEVICE, counter, msg),
        "{tag}"
    );
}

fn opens_down(tag: &str, echo: u32, msg: Down<'_>) {
    let f = doc_hex(tag);
    let d = open_down(&keys(), DEVICE, &f, |l| (l == echo as u16).then_some(echo)).unwrap();
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
    let n = seal_chunk(&keys(), DEVICE, 8, 3, &data, &mut out).unwrap();
    check("chunk", &out[..n]);
    let f = doc_hex("chunk");
    assert_eq!(
        open_down(&keys(), DEVICE, &f, |l| (l == 8).then_some(8)).unwrap(),
        DownFrame::Chunk {
            echo: 8,
            slot: 3,
            data: &data
        }
    );
}

#[test]
fn the_other_messages() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ack", seal_down(9, &Down::Ack)),
        ("nack", seal_down(9, &Down::Nack(NackCode::UnknownUpdate))),
        (
            "defer",
            seal_up(
                9,
                &Up::UpdateDecision(UpdateDecision {
                    update: UpdateId(7),
                    decision: Decision::Defer {
                        retry_in_s: 3_600,
                        reason: DeferReason::LowBattery,
                    },
                }),
            ),
        ),
        (
            "decline",
            seal_up(
                10,
                &Up::UpdateDecision(UpdateDecision {
                    update: UpdateId(7),
                    decision: Decision::Decline(DeclineReason::Rejected(
                        UpdateResult::UnsupportedPackage,
                    )),
                }),
            ),
        ),
        (
            "status",
            seal_up(
                11,
                &Up::UpdateStatus(UpdateStatus {
                    update: UpdateId(7),
                    state: OtaState::Idle,
                    result: UpdateResult::Success,
                }),
            ),
        ),
        (
            "goodbye",
            seal_up(12, &Up::Goodbye(Goodbye { sleep_s: 900 })),
        ),
    ];
    for (tag, built) in &cases {
        check(tag, built);
    }
    // Each one decodes back.
    for (tag, _) in &cases {
        let f = doc_hex(tag);
        if f[0] == 0x10 {
            open_up(&keys(), &f).unwrap();
        } else {
            open_down(&keys(), DEVICE, &f, |l| Some(u32::from(l))).unwrap();
        }
    }
}

fn progress_checkin<'a>() -> Up<'a> {
    let Up::CheckIn(mut c) = checkin() else {
        unreachable!()
    };
    c.trial = true;
    c.forced_sleeps = 2;
    c.ota = OtaReport {
        state: OtaState::Downloading,
        result: UpdateResult::Initial,
        download: Some(DownloadProgress {
            update: UpdateId(7),
            bytes_done: 51_200,
        }),
    };
    Up::CheckIn(c)
}

#[test]
fn checkin_with_progress_and_an_inline_offer() {
    check("checkin-progress", &seal_up(13, &progress_checkin()));
    opens_up("checkin-progress", 13, progress_checkin());
    let manifest: Vec<u8> = (0..16).collect();
    let inline = welcome(Some(UpdateOffer {
        update: UpdateId(7),
        version: FirmwareVersion {
            major: 1,
            minor: 3,
            patch: 0,
        },
        image_size: 600,
        manifest: ManifestRef::Inline(&manifest),
    }));
    check("welcome-inline", &seal_down(13, &inline));
    opens_down("welcome-inline", 13, inline);
}

#[test]
fn on_a_byte_stream() {
    let f = seal_up(5, &checkin());
    let mut enc = vec![0u8; stream_encoded_max(f.len())];
    let n = stream_encode(&f, &mut enc).unwrap();
    check("stream", &enc[..n]);
}
