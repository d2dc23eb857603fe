//! The report's charts, drawn by plotters as SVG (text escaped by plotters' SVG
//! backend) and embedded as data URIs.

use base64::Engine;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Width and height of a chart, in CSS pixels.
const SIZE: (u32, u32) = (460, 300);

/// The palette of lines and points (colour-blind safe, Okabe-Ito).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(240, 228, 66),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// An `<img>` of an SVG document, with its alt text (escaped by the caller's `escape`).
pub fn img(svg: &str, alt: &str, class: &str) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(svg);
    format!("<img class=\"{class}\" alt=\"{alt}\" src=\"data:image/svg+xml;base64,{data}\">")
}

/// Draws on a fresh SVG of `size`; the SVG text.
fn draw(size: (u32, u32), paint: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>) -> String {
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let _ = area.fill(&WHITE);
        if let Err(e) = paint(&area) {
            let _ = area.draw(&Text::new(format!("cannot draw: {e}"), (10, 20), ("sans-serif", 14)));
        }
        let _ = area.present();
    }
    svg
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    // a constant series (a fixed learning rate) gets room around its value
    let pad = if hi > lo { (hi - lo) * 0.05 } else { hi.abs().max(1e-12) * 0.5 };
    (lo - pad, hi + pad)
}

/// A named line of points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    /// A shaded band about the line (x, lower, upper), e.g. a confidence interval; empty
    /// for none.
    pub band: Vec<(f64, f64, f64)>,
}

impl Series {
    /// A line without a band.
    pub fn line(name: String, points: Vec<(f64, f64)>, dashed: bool) -> Self {
        Series { name, points, dashed, band: Vec::new() }
    }
}

/// A vertical marker: x and its label.
pub struct Marker {
    pub x: f64,
    pub label: String,
}

/// Lines over a numeric x axis with vertical markers (phase boundaries, the best epoch).
pub fn lines(title: &str, x_label: &str, y_label: &str, series: &[Series], markers: &[Marker], y_unit: bool) -> String {
    draw(SIZE, |area| {
        let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let (x0, x1) = range(xs);
        let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1).chain(s.band.iter().flat_map(|b| [b.1, b.2])));
        let (y0, y1) = if y_unit { (0.0, 1.0) } else { range(ys) };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(52)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        for m in markers {
            let style = ShapeStyle { color: RGBColor(150, 150, 150).to_rgba(), filled: false, stroke_width: 1 };
            chart.draw_series(LineSeries::new([(m.x, y0), (m.x, y1)], style)).map_err(|e| e.to_string())?;
            chart
                .draw_series(std::iter::once(Text::new(m.label.clone(), (m.x, y1), ("sans-serif", 11).into_font())))
                .map_err(|e| e.to_string())?;
        }
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            if !s.band.is_empty() {
                let outline: Vec<(f64, f64)> =
                    s.band.iter().map(|b| (b.0, b.2)).chain(s.band.iter().rev().map(|b| (b.0, b.1))).collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(outline, c.mix(0.2).filled())))
                    .map_err(|e| e.to_string())?;
            }
            let points: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.1.is_finite()).collect();
            let drawn = if s.dashed {
                chart.draw_series(DashedLineSeries::new(points, 6, 4, c.stroke_width(2)))
            } else {
                chart.draw_series(LineSeries::new(points, c.stroke_width(2)))
            };
            drawn
                .map_err(|e| e.to_string())?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())
    })
}

/// A matrix of counts as a heat map, each cell with its count and its share of the row
/// (rows: truth, columns: prediction).
pub fn confusion(title: &str, classes: &[String], counts: &[Vec<u64>]) -> String {
    let n = classes.len();
    let side = (140 + 60 * n as u32).clamp(300, 900);
    draw((side + 40, side), |area| {
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(110)
            .build_cartesian_2d(0.0..n as f64, n as f64..0.0)
            .map_err(|e| e.to_string())?;
        let label = |v: &f64| classes.get(v.floor() as usize).filter(|_| v.fract() == 0.5).cloned().unwrap_or_default();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(2 * n + 1)
            .y_labels(2 * n + 1)
            .x_label_formatter(&label)
            .y_label_formatter(&label)
            .x_desc("predicted")
            .y_desc("true")
            .draw()
            .map_err(|e| e.to_string())?;
        for (r, row) in counts.iter().enumerate() {
            let total: u64 = row.iter().sum();
            for (c, &count) in row.iter().enumerate() {
                let share = if total > 0 { count as f64 / total as f64 } else { 0.0 };
                let fill = ViridisRGB.get_color(share as f32);
                let (x, y) = (c as f64, r as f64);
                chart
                    .draw_series(std::iter::once(Rectangle::new([(x, y), (x + 1.0, y + 1.0)], fill.filled())))
                    .map_err(|e| e.to_string())?;
                let ink = if share > 0.6 { BLACK } else { WHITE };
                let text = format!("{count}\n{:.0}%", share * 100.0);
                for (k, line) in text.lines().enumerate() {
                    let style = ("sans-serif", 13).into_font().color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
                    chart
                        .draw_series(std::iter::once(Text::new(
                            line.to_string(),
                            (x + 0.5, y + 0.38 + 0.26 * k as f64),
                            style,
                        )))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    })
}

/// A histogram of values in [0, 1].
pub fn histogram(title: &str, x_label: &str, values: &[f64], bins: usize) -> String {
    draw(SIZE, |area| {
        let mut counts = vec![0u32; bins];
        for v in values.iter().filter(|v| v.is_finite()) {
            counts[((v.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1)] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(1).max(1);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..1.0, 0u32..top + 1)
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc(x_label).y_desc("images").draw().map_err(|e| e.to_string())?;
        let width = 1.0 / bins as f64;
        chart
            .draw_series(
                counts.iter().enumerate().map(|(i, &c)| {
                    Rectangle::new([(i as f64 * width, 0), ((i + 1) as f64 * width, c)], color(0).filled())
                }),
            )
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// A metric of each run against the values of one swept key (categories on x, in the
/// order given), one point per run.
pub fn by_value(key: &str, metric: &str, categories: &[String], points: &[(usize, f64)]) -> String {
    draw((300, 240), |area| {
        let (y0, y1) = range(points.iter().map(|p| p.1));
        let n = categories.len().max(1);
        let mut chart = ChartBuilder::on(area)
            .caption(key, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(52)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, y0..y1)
            .map_err(|e| e.to_string())?;
        let label = |v: &f64| {
            let i = v.round();
            if (v - i).abs() < 1e-9 { categories.get(i as usize).cloned().unwrap_or_default() } else { String::new() }
        };
        chart
            .configure_mesh()
            .x_labels(n.min(12))
            .x_label_formatter(&label)
            .y_desc(metric)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(points.iter().map(|&(c, v)| Circle::new((c as f64, v), 4, color(0).mix(0.8).filled())))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// One row of a forest plot: its label, value and interval.
pub struct ForestRow {
    pub label: String,
    pub value: f64,
    pub interval: Option<(f64, f64)>,
}

/// A forest plot: each row's value and interval on a common axis, top to bottom, with
/// a dashed vertical line at `reference` (the whole test set's value).
pub fn forest(title: &str, x_label: &str, rows: &[ForestRow], reference: Option<f64>) -> String {
    let n = rows.len().max(1);
    let height = 90 + 26 * n as u32;
    // room for the longest label (about 7 px a character in the axis font)
    let longest = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(0) as u32;
    let labels = (longest * 7 + 16).clamp(120, 720);
    draw((labels + 400, height), |area| {
        let xs =
            rows.iter().flat_map(|r| [r.value].into_iter().chain(r.interval.into_iter().flat_map(|(a, b)| [a, b])));
        let (x0, x1) = range(xs.chain(reference));
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(labels)
            .build_cartesian_2d(x0..x1, n as f64 - 0.5..-0.5)
            .map_err(|e| e.to_string())?;
        let label = |v: &f64| {
            let i = v.round();
            if (v - i).abs() < 1e-9 {
                rows.get(i as usize).map(|r| r.label.clone()).unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .y_labels(n)
            .y_label_formatter(&label)
            .x_desc(x_label)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        if let Some(x) = reference {
            let line = DashedLineSeries::new([(x, -0.5), (x, n as f64 - 0.5)], 5, 4, RGBColor(120, 120, 120).into());
            chart.draw_series(line).map_err(|e| e.to_string())?;
        }
        for (i, row) in rows.iter().enumerate() {
            let y = i as f64;
            if let Some((lower, upper)) = row.interval {
                chart
                    .draw_series(LineSeries::new([(lower, y), (upper, y)], color(0).stroke_width(2)))
                    .map_err(|e| e.to_string())?;
            }
            chart
                .draw_series(std::iter::once(Circle::new((row.value, y), 5, color(0).filled())))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}
