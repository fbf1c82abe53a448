//! A tiny inline line of recent values (loss per training window), scaled to its own range.

use dioxus::prelude::*;

const WIDTH: f64 = 240.0;
const HEIGHT: f64 = 48.0;
const PAD: f64 = 3.0;

/// An SVG sparkline of `values`, oldest first.
#[component]
pub fn Sparkline(id: String, values: Vec<f32>, label: String) -> Element {
    let points = polyline(&values);
    let title = match (values.first(), values.last()) {
        (Some(first), Some(last)) => format!("{label}: {first:.4} → {last:.4} over {} windows", values.len()),
        _ => format!("{label}: no data yet"),
    };
    if values.len() < 2 {
        return rsx! {
            span { id: "{id}", class: "sparkline empty", title: "{title}", "waiting for the first windows" }
        };
    }
    rsx! {
        svg {
            id: "{id}",
            class: "sparkline",
            view_box: "0 0 {WIDTH} {HEIGHT}",
            preserve_aspect_ratio: "none",
            role: "img",
            "aria-label": "{title}",
            title { "{title}" }
            polyline { class: "spark-line", points: "{points}" }
        }
    }
}

/// `x,y` pairs for an SVG polyline; higher values are drawn higher. Non-finite values (a
/// diverged window) are left out rather than breaking the line.
fn polyline(values: &[f32]) -> String {
    let finite = || values.iter().map(|v| *v as f64).filter(|v| v.is_finite());
    let lo = finite().fold(f64::INFINITY, f64::min);
    let hi = finite().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let step = if values.len() > 1 { (WIDTH - 2.0 * PAD) / (values.len() - 1) as f64 } else { 0.0 };
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, v)| {
            let x = PAD + i as f64 * step;
            let y = HEIGHT - PAD - (*v as f64 - lo) / span * (HEIGHT - 2.0 * PAD);
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}
