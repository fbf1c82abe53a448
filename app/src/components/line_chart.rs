//! A small SVG line chart: one or two series against a shared x axis, each on its own y scale
//! (the first labelled on the left, the second on the right). Enough for accuracy and loss per
//! round without pulling a JavaScript chart library into the page.

use dioxus::prelude::*;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 56.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;
const X_TICKS: usize = 6;
/// Beyond this many points per series, points are drawn as a bare line.
const MAX_DOTS: usize = 60;

/// How a series' y values are labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Fractions in [0, 1] shown as percentages.
    Percent,
    /// Plain numbers with two decimals.
    Decimal,
}

impl Axis {
    fn label(self, value: f64) -> String {
        match self {
            Axis::Percent => format!("{:.0}%", value * 100.0),
            Axis::Decimal => format!("{value:.2}"),
        }
    }
}

/// One line of the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    /// CSS class giving the line its colour.
    pub class: String,
    /// `(x, y)` points, in x order.
    pub points: Vec<(f64, f64)>,
    /// The y values mapped to the bottom and top of the plot.
    pub range: (f64, f64),
    pub axis: Axis,
}

/// The plot area's geometry for a given x domain.
struct Frame {
    x_lo: f64,
    x_hi: f64,
}

impl Frame {
    fn plot_width() -> f64 {
        WIDTH - LEFT - RIGHT
    }

    fn plot_height() -> f64 {
        HEIGHT - TOP - BOTTOM
    }

    fn x(&self, x: f64) -> f64 {
        LEFT + (x - self.x_lo) / (self.x_hi - self.x_lo) * Self::plot_width()
    }

    fn y(range: (f64, f64), y: f64) -> f64 {
        let (lo, hi) = range;
        let t = if hi > lo { ((y - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.5 };
        TOP + (1.0 - t) * Self::plot_height()
    }
}

/// Whole numbers across `[lo, hi]`, at most about [`X_TICKS`] of them (rounds are integers).
fn integer_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let step = ((hi - lo) / X_TICKS as f64).ceil().max(1.0);
    let mut ticks = Vec::new();
    let mut x = lo.ceil();
    while x <= hi && ticks.len() <= 2 * X_TICKS {
        ticks.push(x);
        x += step;
    }
    ticks
}

/// One series in plot coordinates.
struct Line {
    class: String,
    /// SVG polyline points.
    path: String,
    dots: Vec<(f64, f64)>,
}

/// Draws `series` against x (labelled `x_label`); `id` goes on the `<svg>`.
#[component]
pub fn LineChart(id: String, title: String, x_label: String, series: Vec<Series>) -> Element {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).filter(|x| x.is_finite());
    let (x_lo, x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let empty = !x_lo.is_finite();
    let frame = if empty {
        Frame { x_lo: 0.0, x_hi: 1.0 }
    } else if x_hi > x_lo {
        Frame { x_lo, x_hi }
    } else {
        Frame { x_lo: x_lo - 1.0, x_hi: x_hi + 1.0 }
    };

    let bottom = TOP + Frame::plot_height();
    let x_ticks: Vec<(f64, String)> = integer_ticks(frame.x_lo, frame.x_hi)
        .into_iter()
        .map(|x| (frame.x(x), format!("{x}")))
        .collect();
    // Gridlines at 0, ½ and 1 of each scale; labels of the first series left, second right.
    let y_ticks: Vec<(f64, Option<String>, Option<String>)> = [0.0, 0.5, 1.0]
        .into_iter()
        .map(|t| {
            let label = |s: Option<&Series>| s.map(|s| s.axis.label(s.range.0 + (s.range.1 - s.range.0) * t));
            (TOP + (1.0 - t) * Frame::plot_height(), label(series.first()), label(series.get(1)))
        })
        .collect();
    let lines: Vec<Line> = series
        .iter()
        .map(|s| {
            let dots: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| (frame.x(x), Frame::y(s.range, y)))
                .collect();
            let path = dots.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect::<Vec<_>>().join(" ");
            Line { class: s.class.clone(), path, dots }
        })
        .collect();

    // Dots help read a few rounds; on a long run they only blur the line.
    let show_dots = lines.iter().all(|l| l.dots.len() <= MAX_DOTS);

    rsx! {
        figure { class: "chart",
            svg {
                id: "{id}",
                class: "line-chart",
                view_box: "0 0 {WIDTH} {HEIGHT}",
                role: "img",
                "aria-label": "{title}",
                title { "{title}" }
                for (i, (y, left, right)) in y_ticks.into_iter().enumerate() {
                    g { key: "y{i}",
                        line { class: "grid", x1: "{LEFT}", x2: "{WIDTH - RIGHT}", y1: "{y:.1}", y2: "{y:.1}" }
                        if let Some(left) = left {
                            text { class: "tick", x: "{LEFT - 6.0}", y: "{y + 4.0:.1}", text_anchor: "end", "{left}" }
                        }
                        if let Some(right) = right {
                            text { class: "tick", x: "{WIDTH - RIGHT + 6.0}", y: "{y + 4.0:.1}", text_anchor: "start", "{right}" }
                        }
                    }
                }
                line { class: "axis", x1: "{LEFT}", x2: "{WIDTH - RIGHT}", y1: "{bottom}", y2: "{bottom}" }
                if !empty {
                    for (i, (x, label)) in x_ticks.into_iter().enumerate() {
                        text { key: "x{i}", class: "tick", x: "{x:.1}", y: "{bottom + 16.0}", text_anchor: "middle", "{label}" }
                    }
                }
                text { class: "axis-label", x: "{LEFT + Frame::plot_width() / 2.0}", y: "{HEIGHT - 4.0}", text_anchor: "middle",
                    "{x_label}"
                }
                for line in lines {
                    g { key: "{line.class}", class: "series {line.class}",
                        if line.dots.len() > 1 {
                            polyline { class: "line", points: "{line.path}" }
                        }
                        for (j, (x, y)) in line.dots.into_iter().enumerate().filter(|_| show_dots) {
                            circle { key: "{j}", class: "dot", cx: "{x:.1}", cy: "{y:.1}", r: "3" }
                        }
                    }
                }
                if empty {
                    text { class: "chart-empty", x: "{WIDTH / 2.0}", y: "{HEIGHT / 2.0}", text_anchor: "middle",
                        "no heads yet"
                    }
                }
            }
            figcaption { class: "legend",
                for s in series.iter() {
                    span { key: "{s.name}", class: "legend-item {s.class}",
                        span { class: "swatch" }
                        "{s.name}"
                    }
                }
            }
        }
    }
}
