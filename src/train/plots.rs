//! Small self-contained SVG plots for run reports: a line chart (loss curve), a scatter plot
//! coloured by class (2-d PCA of embeddings) and a heat map (class-mean cosine matrix). Plain
//! text output, no fonts or dependencies; every plot is a complete `<svg>` document.

use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 420.0;
const MARGIN: f64 = 56.0;

/// Ten distinguishable colours (the Tableau 10 palette), cycled for more classes.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn header(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        WIDTH / 2.0,
        escape(title)
    )
}

/// Finite (min, max) of the values, widened when degenerate so scales never divide by zero.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo, hi)
}

/// Axes with min/max tick labels and axis titles.
fn axes(svg: &mut String, x: (f64, f64), y: (f64, f64), x_label: &str, y_label: &str) {
    let (l, r, t, b) = (MARGIN, WIDTH - MARGIN / 2.0, MARGIN, HEIGHT - MARGIN);
    let _ = write!(
        svg,
        "<path d=\"M{l} {t} L{l} {b} L{r} {b}\" stroke=\"black\" fill=\"none\"/>\n\
         <text x=\"{l}\" y=\"{}\" text-anchor=\"start\">{}</text>\n\
         <text x=\"{r}\" y=\"{}\" text-anchor=\"end\">{}</text>\n\
         <text x=\"{}\" y=\"{b}\" text-anchor=\"end\">{}</text>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"14\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">{}</text>\n",
        b + 16.0,
        fmt_tick(x.0),
        b + 16.0,
        fmt_tick(x.1),
        l - 4.0,
        fmt_tick(y.0),
        l - 4.0,
        t + 4.0,
        fmt_tick(y.1),
        (l + r) / 2.0,
        HEIGHT - 12.0,
        escape(x_label),
        (t + b) / 2.0,
        (t + b) / 2.0,
        escape(y_label)
    );
}

fn fmt_tick(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

/// Maps data coordinates to the plot area.
fn scale(v: f64, (lo, hi): (f64, f64), from: f64, to: f64) -> f64 {
    from + (v - lo) / (hi - lo) * (to - from)
}

/// A line chart of one or more named series of (x, y) points.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> String {
    let mut svg = header(title);
    let xr = range(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)));
    let yr = range(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)));
    axes(&mut svg, xr, yr, x_label, y_label);
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| {
                format!(
                    "{:.1},{:.1}",
                    scale(x, xr, MARGIN, WIDTH - MARGIN / 2.0),
                    scale(y, yr, HEIGHT - MARGIN, MARGIN)
                )
            })
            .collect();
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"{colour}\" text-anchor=\"end\">{}</text>",
            path.join(" "),
            WIDTH - MARGIN / 2.0,
            MARGIN + 14.0 * i as f64,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A scatter plot of 2-d points coloured by class, with a legend.
pub fn scatter_by_class(title: &str, points: &[(f64, f64)], classes: &[usize]) -> String {
    let mut svg = header(title);
    let xr = range(points.iter().map(|p| p.0));
    let yr = range(points.iter().map(|p| p.1));
    axes(&mut svg, xr, yr, "PC 1", "PC 2");
    for (&(x, y), &c) in points.iter().zip(classes) {
        if x.is_finite() && y.is_finite() {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\" fill-opacity=\"0.7\"/>",
                scale(x, xr, MARGIN, WIDTH - MARGIN / 2.0),
                scale(y, yr, HEIGHT - MARGIN, MARGIN),
                PALETTE[c % PALETTE.len()]
            );
        }
    }
    let k = classes.iter().max().map_or(0, |m| m + 1);
    for c in 0..k {
        let y = MARGIN + 14.0 * c as f64;
        let _ = writeln!(
            svg,
            "<circle cx=\"{}\" cy=\"{}\" r=\"4\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{c}</text>",
            WIDTH - 40.0,
            y - 4.0,
            PALETTE[c % PALETTE.len()],
            WIDTH - 32.0,
            y
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A heat map of a square matrix with values in [−1, 1] (blue negative, red positive), each
/// cell labelled with its value.
pub fn heat_map(title: &str, matrix: &[Vec<f64>]) -> String {
    let mut svg = header(title);
    let k = matrix.len().max(1);
    let side = (HEIGHT - MARGIN - 20.0).min(WIDTH - 2.0 * MARGIN);
    let cell = side / k as f64;
    let x0 = (WIDTH - side) / 2.0;
    let y0 = MARGIN - 16.0;
    for (i, row) in matrix.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let t = v.clamp(-1.0, 1.0);
            let (r, g, b) = if t >= 0.0 {
                (255.0, 255.0 * (1.0 - t), 255.0 * (1.0 - t))
            } else {
                (255.0 * (1.0 + t), 255.0 * (1.0 + t), 255.0)
            };
            let _ = writeln!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{cell:.1}\" height=\"{cell:.1}\" \
                 fill=\"rgb({:.0},{:.0},{:.0})\" stroke=\"white\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"{:.0}\">{v:.2}</text>",
                x0 + j as f64 * cell,
                y0 + i as f64 * cell,
                r,
                g,
                b,
                x0 + (j as f64 + 0.5) * cell,
                y0 + (i as f64 + 0.55) * cell,
                (cell / 3.5).clamp(6.0, 12.0)
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{i}</text>",
            x0 - 4.0,
            y0 + (i as f64 + 0.55) * cell
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_complete_documents_and_survive_degenerate_input() {
        let line = line_chart(
            "loss",
            "step",
            "loss",
            &[("train", vec![(0.0, 2.0), (1.0, f64::NAN), (2.0, 1.0)])],
        );
        assert!(line.starts_with("<svg") && line.trim_end().ends_with("</svg>"));
        assert!(line.contains("<polyline") && !line.contains("NaN"));
        let s = scatter_by_class("pca <a&b>", &[(0.0, 0.0), (0.0, 0.0)], &[0, 3]);
        assert!(s.contains("pca &lt;a&amp;b&gt;") && s.matches("<circle").count() == 2 + 4);
        let h = heat_map("cos", &[vec![1.0, -0.5], vec![-0.5, 1.0]]);
        assert_eq!(h.matches("<rect").count(), 1 + 4);
        assert!(h.contains("rgb(255,0,0)") && h.contains("-0.50"));
    }
}
