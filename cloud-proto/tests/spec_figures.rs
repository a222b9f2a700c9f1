//! The figures and formulas of `docs/protocol.md` are what the code computes.
//!
//! Every inline formula of the form `` `EXPR = VALUE` `` in the spec is evaluated here with the
//! code's constants (floor `⌊…⌋` and ceiling `⌈…⌉` as written) and must give `VALUE`; the
//! figures the spec states in prose are computed from the code and looked up in the text.

mod common;

use cloud_proto::*;

const DOC: &str = include_str!("../../docs/protocol.md");

/// The value of a constant the spec names in a formula, from the code.
fn constant(name: &str) -> Option<i128> {
    let v = match name {
        "MAX_FRAME" => MAX_FRAME,
        "MAX_CHUNK_DATA" => MAX_CHUNK_DATA,
        "MAX_CHUNK_DATA_DATAGRAM" => MAX_CHUNK_DATA_DATAGRAM,
        "TAG_LEN" => TAG_LEN,
        "UP_HEADER_LEN" => UP_HEADER_LEN,
        "DOWN_HEADER_LEN" => DOWN_HEADER_LEN,
        "CHUNK_HEADER_LEN" => CHUNK_HEADER_LEN,
        "MAX_INLINE_MANIFEST" => MAX_INLINE_MANIFEST,
        "MAX_PUBLISHES" => MAX_PUBLISHES,
        "MAX_RANGES" => MAX_RANGES,
        "MAX_CHUNKS_PER_REQUEST" => MAX_CHUNKS_PER_REQUEST as usize,
        _ => return None,
    };
    Some(v as i128)
}

/// A rational number (numerator, denominator > 0): divisions stay exact until a floor or a
/// ceiling says how to round.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Q(i128, i128);

impl Q {
    fn int(n: i128) -> Self {
        Q(n, 1)
    }
    fn add(self, o: Q) -> Q {
        Q(self.0 * o.1 + o.0 * self.1, self.1 * o.1)
    }
    fn sub(self, o: Q) -> Q {
        Q(self.0 * o.1 - o.0 * self.1, self.1 * o.1)
    }
    fn mul(self, o: Q) -> Q {
        Q(self.0 * o.0, self.1 * o.1)
    }
    fn div(self, o: Q) -> Q {
        assert!(o.0 != 0, "division by zero");
        let (n, d) = (self.0 * o.1, self.1 * o.0);
        if d < 0 {
            Q(-n, -d)
        } else {
            Q(n, d)
        }
    }
    fn floor(self) -> Q {
        Q(self.0.div_euclid(self.1), 1)
    }
    fn ceil(self) -> Q {
        Q(-((-self.0).div_euclid(self.1)), 1)
    }
}

/// A recursive-descent evaluator for the spec's formulas: numbers (`1,036` allowed), the
/// code's constants, `+ − - × * /`, parentheses, `⌊ ⌋` and `⌈ ⌉`.
struct Eval<'a> {
    s: &'a [char],
    i: usize,
}

impl Eval<'_> {
    fn skip(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_whitespace()) {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<char> {
        self.skip();
        self.s.get(self.i).copied()
    }
    fn expect(&mut self, c: char) {
        assert_eq!(self.peek(), Some(c), "formula: expected {c}");
        self.i += 1;
    }
    fn sum(&mut self) -> Q {
        let mut v = self.product();
        loop {
            match self.peek() {
                Some('+') => {
                    self.i += 1;
                    v = v.add(self.product());
                }
                Some('−' | '-') => {
                    self.i += 1;
                    v = v.sub(self.product());
                }
                _ => return v,
            }
        }
    }
    fn product(&mut self) -> Q {
        let mut v = self.atom();
        loop {
            match self.peek() {
                Some('×' | '*') => {
                    self.i += 1;
                    v = v.mul(self.atom());
                }
                Some('/') => {
                    self.i += 1;
                    v = v.div(self.atom());
                }
                _ => return v,
            }
        }
    }
    fn atom(&mut self) -> Q {
        match self.peek() {
            Some('(') => {
                self.i += 1;
                let v = self.sum();
                self.expect(')');
                v
            }
            Some('⌊') => {
                self.i += 1;
                let v = self.sum();
                self.expect('⌋');
                v.floor()
            }
            Some('⌈') => {
                self.i += 1;
                let v = self.sum();
                self.expect('⌉');
                v.ceil()
            }
            Some(c) if c.is_ascii_digit() => {
                let mut n = 0i128;
                while let Some(&c) = self.s.get(self.i) {
                    if let Some(d) = c.to_digit(10) {
                        n = n * 10 + i128::from(d);
                    } else if c != ',' {
                        break;
                    }
                    self.i += 1;
                }
                Q::int(n)
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    self.i += 1;
                }
                let name: String = self.s[start..self.i].iter().collect();
                Q::int(constant(&name).unwrap_or_else(|| panic!("unknown constant {name}")))
            }
            other => panic!("formula: unexpected {other:?}"),
        }
    }
}

fn eval(expr: &str) -> Q {
    let chars: Vec<char> = expr.chars().collect();
    let mut e = Eval { s: &chars, i: 0 };
    let v = e.sum();
    assert_eq!(e.peek(), None, "formula {expr}: trailing text");
    v
}

/// The spec's prose, without its fenced blocks (diagrams and hex).
fn prose() -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in DOC.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Every `` `EXPR = VALUE` `` of the prose whose EXPR computes something (has an operator)
/// and whose VALUE is a number. A chain `A = B = VALUE` gives one entry per expression.
fn formulas() -> Vec<(String, i128)> {
    let text = prose();
    let mut found = Vec::new();
    for (i, span) in text.split('`').enumerate() {
        if i % 2 == 0 {
            continue; // outside backticks
        }
        let Some((exprs, value)) = span.rsplit_once('=') else {
            continue;
        };
        let value = value.trim().replace(',', "");
        let Ok(value) = value.parse::<i128>() else {
            continue;
        };
        for expr in exprs.split('=') {
            if expr.contains(['+', '−', '-', '×', '*', '/', '⌊', '⌈']) {
                found.push((expr.trim().to_string(), value));
            }
        }
    }
    found
}

#[test]
fn every_formula_of_the_spec_evaluates_to_its_stated_value() {
    let all = formulas();
    for (expr, value) in &all {
        assert_eq!(
            eval(expr),
            Q::int(*value),
            "docs/protocol.md: `{expr} = {value}` does not hold with the code's constants"
        );
    }
    assert!(all.len() >= 5, "only {} formulas found", all.len());
}

/// `1036` as the spec writes it: `1,036`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `text` with every run of whitespace (line breaks included) as one space.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The spec's prose says `needle` (line breaks do not matter).
fn assert_states(what: &str, needle: &str) {
    assert!(
        flat(&prose()).contains(&flat(needle)),
        "docs/protocol.md should state {what} as `{needle}`"
    );
}

#[test]
fn the_stream_buffer_is_what_the_code_needs() {
    // The worst frame for COBS: the longest, without a zero byte.
    let frame = vec![0x55u8; MAX_FRAME];
    let mut enc = vec![0u8; stream_encoded_max(MAX_FRAME) + 16];
    let n = stream_encode(&frame, &mut enc).unwrap();
    assert_eq!(
        n,
        stream_encoded_max(MAX_FRAME),
        "stream_encoded_max is reached"
    );
    assert_states(
        "the largest encoded frame",
        &format!("`MAX_FRAME + ⌊MAX_FRAME / 254⌋ + 2 = {}`", thousands(n)),
    );
    // The receiver keeps what lies between two delimiters: one byte less.
    let mut dec = StreamDecoder::<{ MAX_FRAME + MAX_FRAME / 254 + 1 }>::new();
    let (_, got) = dec.feed(&enc[..n]);
    assert_eq!(got.unwrap().unwrap(), &frame[..]);
    let mut short = StreamDecoder::<{ MAX_FRAME + MAX_FRAME / 254 }>::new();
    let (_, got) = short.feed(&enc[..n]);
    assert_eq!(got, Some(Err(StreamError::Overflow)));
    assert_states(
        "the receiver's buffer",
        &format!("`MAX_FRAME + ⌊MAX_FRAME / 254⌋ + 1 = {}`", thousands(n - 1)),
    );
    // And no frame of any length, zeros or not, encodes longer than stream_encoded_max.
    for len in [0, 1, 253, 254, 255, 508, 509, 1000, MAX_FRAME] {
        for fill in [0u8, 1] {
            let f = vec![fill; len];
            let mut e = vec![0u8; stream_encoded_max(len)];
            assert!(stream_encode(&f, &mut e).is_some(), "len {len} fill {fill}");
        }
    }
}

#[test]
fn the_defaults_in_brackets_are_the_code_defaults() {
    let c = DeviceConfig::new(common::DEVICE);
    assert_states(
        "rto_initial",
        &format!("`rto_initial` [{} s]", c.rto_initial_ms / 1000),
    );
    assert_states("rto_max", &format!("`rto_max` [{} s]", c.rto_max_ms / 1000));
    assert_states(
        "max_transmissions",
        &format!("`max_transmissions` [{}]", c.max_transmissions),
    );
    assert_states(
        "the counter reservation",
        &format!("reservation [+{}]", c.counter_reserve),
    );
    assert_states(
        "the counters skipped by a power loss",
        &format!("at most {} counters are skipped", c.counter_reserve),
    );
    let p = ReplayPolicy::DEFAULT;
    assert_states(
        "the retransmission window",
        &format!(
            "retransmission window [{} s]",
            p.retransmit_window_ms / 1000
        ),
    );
    assert_states(
        "the answer limit",
        &format!("the maximum [{}]", p.max_answers),
    );
}

#[test]
fn the_last_transmission_leaves_when_the_spec_says() {
    let mut dev = common::device();
    let _ = dev.send(0, &common::checkin()).unwrap();
    let mut sent_at = vec![0u64];
    let mut now = 0;
    while let Some(t) = dev.poll_timeout() {
        now = t;
        match dev.handle_timeout(now) {
            Timeout::Retransmit(_) => sent_at.push(now),
            Timeout::GaveUp => break,
            other => panic!("{other:?}"),
        }
    }
    let c = DeviceConfig::new(common::DEVICE);
    assert_eq!(sent_at.len(), usize::from(c.max_transmissions));
    let last_s = sent_at[sent_at.len() - 1] / 1000;
    // The spec's formula (checked above) must evaluate to what the endpoint does.
    let (expr, value) = formulas()
        .into_iter()
        .find(|(e, _)| e.starts_with("2 + 4"))
        .expect("the spec's timing formula");
    assert_eq!(value as u64, last_s, "`{expr} = {value}`");
    assert_states(
        "when the last transmission leaves",
        &format!("leaves `{expr} = {last_s}` s after the first"),
    );
    // It gives up one last timeout later (capped at rto_max).
    assert!(now > sent_at[sent_at.len() - 1]);
}

#[test]
fn the_key_labels_have_the_stated_lengths() {
    for (label, len) in [("cloud-proto/1 up", 16), ("cloud-proto/1 down", 18)] {
        assert_eq!(label.len(), len);
    }
    // In the spec's key derivation block.
    assert!(DOC.contains(r#""cloud-proto/1 up")     (ASCII, 16 bytes, no terminator)"#));
    assert!(DOC.contains(r#""cloud-proto/1 down")   (ASCII, 18 bytes)"#));
}

/// The hex of a worked example, and the length its paragraph states (`(N bytes`).
fn example(tag: &str) -> (usize, usize) {
    let begin = format!("<!-- {tag}-begin -->");
    let (before, after) = DOC.split_once(&begin).expect("example");
    let hex: String = after
        .split(&format!("<!-- {tag}-end -->"))
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && l.chars().all(|c| c.is_ascii_hexdigit() || c == ' '))
        .flat_map(|l| l.chars().filter(|c| *c != ' '))
        .collect();
    // The paragraph that introduces the example, back to the previous example's end.
    let intro = before.rsplit("-end -->").next().unwrap();
    let stated = intro
        .rsplit_once(" bytes")
        .and_then(|(head, _)| head.rsplit_once('(').map(|(_, n)| n))
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("{tag}: no `(N bytes` before the example"));
    (hex.len() / 2, stated)
}

const EXAMPLES: [&str; 16] = [
    "checkin",
    "welcome",
    "checkin-publish",
    "welcome-offer",
    "accept",
    "chunk-request",
    "chunk",
    "stream",
    "ack",
    "nack",
    "defer",
    "decline",
    "status",
    "goodbye",
    "checkin-progress",
    "welcome-inline",
];

#[test]
fn every_example_states_its_own_length() {
    for tag in EXAMPLES {
        let (len, stated) = example(tag);
        assert_eq!(
            len, stated,
            "example {tag}: {len} bytes, the text says {stated}"
        );
    }
    // Every example of the doc is in the list.
    assert_eq!(DOC.matches("-begin -->").count(), EXAMPLES.len() + 1); // + the keys
}

/// The row of the costs table (section 6) that starts with `what`.
fn cost_row(what: &str) -> String {
    DOC.lines()
        .find(|l| l.starts_with(&format!("| {what}")))
        .unwrap_or_else(|| panic!("costs row {what}"))
        .to_string()
}

#[test]
fn the_costs_table_and_the_goals_match_the_examples() {
    let len = |tag| example(tag).0;
    let rows = [
        (
            "up frame overhead",
            format!("| {} |", UP_HEADER_LEN + TAG_LEN),
        ),
        (
            "down frame overhead",
            format!("| {} |", DOWN_HEADER_LEN + TAG_LEN),
        ),
        (
            "chunk frame overhead",
            format!("| {} per chunk |", CHUNK_HEADER_LEN + TAG_LEN),
        ),
        (
            "check-in, nothing pending",
            format!("| {} up, {} down |", len("checkin"), len("welcome")),
        ),
        (
            "check-in with one 20-byte publish",
            format!("| {} up |", len("checkin-publish")),
        ),
        (
            "welcome with an offer",
            format!("| {} down |", len("welcome-offer")),
        ),
        (
            "welcome with a 16-byte manifest",
            format!("| {} down |", len("welcome-inline")),
        ),
        ("`Ack`", format!("| {} down |", len("ack"))),
    ];
    for (what, cell) in rows {
        assert!(
            cost_row(what).contains(&cell),
            "costs row {what}: want {cell}"
        );
    }
    let (up, down) = (len("checkin"), len("welcome"));
    assert_states(
        "the check-in of section 1",
        &format!("is {up} bytes up and {down} bytes down (section 7.2)"),
    );
    let wire = up + 28 + down + 28;
    assert_states(
        "the check-in with IPv4/UDP",
        &format!("`{up} + 28 + {down} + 28 = {wire}` bytes per wake"),
    );
}

/// The chunk request frame for one range.
fn one_range_request(update: u32, chunk_size: u16, first: u32, count: u32) -> usize {
    let mut ranges = heapless::Vec::new();
    ranges.push(ChunkRange { first, count }).unwrap();
    let req = ChunkRequest {
        update: UpdateId(update),
        object: Object::Image,
        chunk_size,
        ranges,
    };
    assert!(req.is_valid());
    let mut out = [0u8; MAX_FRAME];
    seal_up(
        &common::keys(),
        common::DEVICE,
        0,
        &Up::ChunkRequest(req),
        &mut out,
    )
    .unwrap()
}

#[test]
fn a_one_range_chunk_request_costs_what_the_table_says() {
    let max_count = MAX_CHUNKS_PER_REQUEST;
    let shortest = one_range_request(0, 1, 0, 1);
    let longest = one_range_request(
        u32::MAX,
        MAX_CHUNK_DATA as u16,
        u32::MAX - max_count,
        max_count,
    );
    let (_, example) = example("chunk-request");
    let row = cost_row("chunk request, one range");
    assert!(
        row.contains(&format!("| {shortest}–{longest} up ({example} in 7.6) |")),
        "{row}: want {shortest}–{longest}"
    );
}

#[test]
fn an_inline_welcome_adds_at_most_what_the_spec_says() {
    let manifest = vec![0xEE; MAX_INLINE_MANIFEST];
    let worst = Down::Welcome(Welcome {
        server_time: u32::MAX,
        publishes_acked: u8::MAX,
        sleep: SleepGrant {
            next_checkin_s: u32::MAX,
            awake_extension_ms: u32::MAX,
        },
        offer: Some(UpdateOffer {
            update: UpdateId(u32::MAX),
            version: FirmwareVersion {
                major: u16::MAX,
                minor: u16::MAX,
                patch: u16::MAX,
            },
            image_size: u32::MAX,
            manifest: ManifestRef::Inline(&manifest),
        }),
    });
    let f = common::reply_to(u32::MAX - 1, &worst);
    let rest = f.len() - MAX_INLINE_MANIFEST;
    assert_states(
        "the largest Welcome besides its manifest",
        &format!("whatever its other fields ({rest} bytes at most)"),
    );
    assert!(f.len() <= 1024);
}

#[test]
fn the_manifest_sizes_follow_the_image_format() {
    let image_format = include_str!("../../docs/image-format.md");
    assert!(image_format.contains("Total length = `120 + 16 × chunk_count + 64`"));
    let manifest_len = |image: usize, chunk: usize| 120 + 16 * image.div_ceil(chunk) + 64;
    assert_states(
        "the manifest of a 256 KiB image in 1 KiB chunks",
        &format!(
            "`120 + 16 × 256 + 64 = {}` bytes",
            thousands(manifest_len(256 * 1024, 1024))
        ),
    );
    // Section 7.4's offer: a 262,144-byte image in 512-byte chunks.
    assert_states(
        "the fetched manifest of 7.4",
        &format!("manifest ({} bytes)", thousands(manifest_len(262_144, 512))),
    );
}

/// The spoofed address an attacker has the answers sent to (TEST-NET-2, RFC 5737).
fn victim(port: u16) -> core::net::SocketAddr {
    core::net::SocketAddr::from(([198, 51, 100, 1], port))
}

#[test]
fn the_worst_reflection_of_a_sniffed_frame_is_what_section_5_says() {
    // The largest answer: a chunk request for the most chunks of the largest size.
    let n = MAX_CHUNKS_PER_REQUEST;
    let req =
        ChunkRequest::plan(UpdateId(1), Object::Image, MAX_CHUNK_DATA as u16, 0..n, n).unwrap();
    let mut dev = common::device();
    let f = dev.send(0, &Up::ChunkRequest(req)).unwrap().frame.to_vec();
    let image = vec![0xA5u8; MAX_CHUNK_DATA * n as usize];
    let policy = ReplayPolicy::DEFAULT;
    // An on-path attacker drops the device's copy and sends its own, as many as it likes,
    // from a victim's address and from a hundred others, for two windows.
    let mut store = common::store();
    let mut sent: std::collections::HashMap<core::net::SocketAddr, usize> = Default::default();
    let mut answers = 0;
    for now in 0..2 * policy.retransmit_window_ms / 1000 {
        let now = now * 1000;
        for from in [victim(1)].into_iter().chain((2..102).map(victim)) {
            let Ok(r) = handle_datagram(&f, from, &mut store, now, policy) else {
                continue;
            };
            answers += 1;
            let mut out = [0u8; MAX_FRAME];
            let bytes = sent.entry(from).or_default();
            serve_chunks(&common::keys(), &r, &image, &mut out, |fr| {
                *bytes += fr.len()
            })
            .unwrap();
        }
    }
    let total: usize = sent.values().sum();
    assert_eq!(sent.len(), 1, "one address is answered: {sent:?}");
    assert_eq!(answers, usize::from(policy.max_answers));
    let per_answer = n as usize * MAX_FRAME;
    assert_eq!(total, answers * per_answer);
    // The figures of section 4.4 and section 5, from these measurements.
    assert_states(
        "the largest answer",
        &format!(
            "`MAX_CHUNKS_PER_REQUEST × MAX_FRAME = {n} × {} = {}`",
            thousands(MAX_FRAME),
            thousands(per_answer)
        ),
    );
    assert_states(
        "the worst reflection",
        &format!(
            "a sniffed {}-byte chunk request can make the server send at most `{answers} × {n} × {} = {}` bytes",
            f.len(),
            thousands(MAX_FRAME),
            thousands(total)
        ),
    );
    // The crate's own docs repeat the figure.
    for (file, text) in [
        ("README.md", include_str!("../README.md")),
        ("src/server.rs", include_str!("../src/server.rs")),
    ] {
        assert!(
            flat(text).contains(&format!("{} bytes", thousands(total))),
            "{file} should state {} bytes",
            thousands(total)
        );
    }
    let frames = answers * n as usize;
    assert_states(
        "the worst reflection with IPv4/UDP headers",
        &format!(
            "({frames} chunk frames; {} bytes with IPv4/UDP headers)",
            thousands(total + frames * 28)
        ),
    );
}
