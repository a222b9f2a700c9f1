//! Charts as inline SVG, rendered on the server (no script, no external resource): a bar
//! chart and the adoption curve. Every label is escaped.

use std::fmt::Write as _;

use super::esc;
use super::time::iso;

/// A bar chart of `values` (label, value) in a `w`×`h` box, bars left to right; the largest
/// value fills the height. Labels are drawn under the bars when there is room (at most 24
/// bars labelled; each bar has a `<title>` with its label and value).
pub(crate) fn bars(title: &str, values: &[(String, u64)], w: u32, h: u32) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart bars\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"{t}\"><title>{t}</title>",
        t = esc(title)
    );
    let (left, bottom, top) = (36u32, 18u32, 8u32);
    let plot_w = w.saturating_sub(left + 6).max(1);
    let plot_h = h.saturating_sub(bottom + top).max(1);
    let max = values.iter().map(|v| v.1).max().unwrap_or(0).max(1);
    let _ = write!(
        out,
        "<text x=\"2\" y=\"{}\">{max}</text><text x=\"2\" y=\"{}\">0</text>",
        top + 10,
        top + plot_h
    );
    let n = values.len().max(1) as u32;
    let slot = plot_w as f64 / f64::from(n);
    let label_every = n.div_ceil(24).max(1);
    for (i, (label, v)) in values.iter().enumerate() {
        let bh = (*v as f64 / max as f64 * f64::from(plot_h)).round();
        let x = f64::from(left) + slot * i as f64 + slot * 0.1;
        let y = f64::from(top + plot_h) - bh;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#1f6feb\">\
             <title>{}: {v}</title></rect>",
            (slot * 0.8).max(1.0),
            esc(label)
        );
        if (i as u32).is_multiple_of(label_every) {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + slot * 0.4,
                h - 4,
                esc(label)
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// The adoption curve of a rollout: devices succeeded over time, from `start_ms` to `now_ms`
/// (a step line through `times`, sorted), under a dashed line at `targeted`.
pub(crate) fn adoption(
    start_ms: u64,
    now_ms: u64,
    times: &[u64],
    targeted: u64,
    w: u32,
    h: u32,
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart adoption\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"Devices updated over time\"><title>Devices updated over time: {} of {targeted}</title>",
        times.len()
    );
    let (left, right, top, bottom) = (40u32, 10u32, 10u32, 20u32);
    let pw = f64::from(w.saturating_sub(left + right).max(1));
    let ph = f64::from(h.saturating_sub(top + bottom).max(1));
    let end = now_ms
        .max(times.last().copied().unwrap_or(0))
        .max(start_ms + 1);
    let ymax = targeted.max(times.len() as u64).max(1) as f64;
    let x = |t: u64| {
        f64::from(left) + (t.saturating_sub(start_ms)) as f64 / (end - start_ms) as f64 * pw
    };
    let y = |n: u64| f64::from(top) + ph - n as f64 / ymax * ph;
    // Axes and the target line.
    let _ = write!(
        out,
        "<line x1=\"{l}\" y1=\"{b:.1}\" x2=\"{r:.1}\" y2=\"{b:.1}\" stroke=\"#d9dee3\"/>\
         <line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b:.1}\" stroke=\"#d9dee3\"/>\
         <line x1=\"{l}\" y1=\"{ty:.1}\" x2=\"{r:.1}\" y2=\"{ty:.1}\" stroke=\"#9a6700\" stroke-dasharray=\"4 3\"/>\
         <text x=\"2\" y=\"{tyl:.1}\">{targeted}</text><text x=\"2\" y=\"{b:.1}\">0</text>\
         <text x=\"{l}\" y=\"{h2}\">{s}</text><text x=\"{r:.1}\" y=\"{h2}\" text-anchor=\"end\">{e}</text>",
        l = left,
        t = top,
        b = f64::from(top) + ph,
        r = f64::from(left) + pw,
        ty = y(targeted),
        tyl = y(targeted) + 4.0,
        h2 = h - 4,
        s = iso(start_ms),
        e = iso(end),
    );
    let mut d = format!("M{:.1} {:.1}", x(start_ms), y(0));
    for (i, t) in times.iter().enumerate() {
        let _ = write!(d, " H{:.1} V{:.1}", x(*t), y(i as u64 + 1));
    }
    let _ = write!(d, " H{:.1}", x(end));
    let _ = write!(
        out,
        "<path d=\"{d}\" fill=\"none\" stroke=\"#1a7f37\" stroke-width=\"2\"/></svg>"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_escape_labels_and_scale() {
        let svg = bars("t<", &[("<b>".into(), 10), ("x".into(), 5)], 200, 100);
        assert!(svg.contains("&lt;b&gt;"));
        assert!(!svg.contains("<b>"));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(bars("empty", &[], 200, 100).starts_with("<svg"));
    }

    #[test]
    fn adoption_steps_once_per_device() {
        let svg = adoption(0, 10_000, &[1_000, 5_000], 4, 400, 200);
        assert_eq!(svg.matches(" V").count(), 2);
        assert!(svg.contains("of 4"));
    }
}
