//! Hand-written SVG plots (a scatter plot, grouped bars, a heat map and a
//! line plot), PNG rendering of SVG through `resvg`, and helpers that build
//! plot specifications from a [`ResultSet`].
//!
//! The SVG documents are plain SVG 1.1 with no `id` attributes, so that
//! several of them can be inlined into one HTML page.

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use labelscope_core::{ResultRow, ResultSet};
use resvg::tiny_skia;
use resvg::usvg::{self, fontdb};

use crate::format::{escape_xml, is_rate};
use crate::{Error, Result};

mod scaled;
pub use scaled::{
    histogram_bins, histogram_svg, inverse_normal_cdf, logit, rate_scatter_svg, AxisScale, HistogramSpec, RatePoint,
    RateScatterSpec, RATE_CLAMP,
};

/// The `font-family` of every text in the plots.
pub const FONT_FAMILY: &str = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif";

/// The largest PNG side [`svg_to_png`] produces, in pixels.
pub const MAX_PNG_SIDE: u32 = 16_384;

// ---------------------------------------------------------------------------
// Specifications.

/// One point of a scatter plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Text drawn next to the point (the model name).
    pub label: String,
    /// Horizontal coordinate.
    pub x: f64,
    /// Vertical coordinate.
    pub y: f64,
    /// Interval of `x` (low, high), drawn as a horizontal error bar.
    pub x_ci: Option<(f64, f64)>,
    /// Interval of `y` (low, high), drawn as a vertical error bar.
    pub y_ci: Option<(f64, f64)>,
}

/// A scatter plot.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterSpec {
    /// Title above the plot.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// The points.
    pub points: Vec<Point>,
    /// Draw the dashed line `y = x`. Both axes then share one range, so
    /// that the line runs from corner to corner.
    pub diagonal: bool,
    /// Draw the ordinary least-squares line `y = a + b·x` and give `a`, `b`
    /// and R² in the legend (only when there are at least two distinct x).
    pub fit: bool,
}

/// A grouped bar chart: one group of bars per category, one bar per series.
#[derive(Debug, Clone, PartialEq)]
pub struct BarSpec {
    /// Title above the plot.
    pub title: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// Category names along the horizontal axis.
    pub categories: Vec<String>,
    /// The series (bars of one color, named in the legend).
    pub series: Vec<BarSeries>,
}

/// One series of a [`BarSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeries {
    /// Name shown in the legend.
    pub name: String,
    /// One value per category; `None` draws no bar.
    pub values: Vec<Option<f64>>,
    /// One interval per category (drawn as a whisker), or empty for none.
    pub ci: Vec<Option<(f64, f64)>>,
}

/// A heat map (2-D histogram): a grid of cells over a rectangle of the
/// plane, each colored by its value.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapSpec {
    /// Title above the plot.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// The horizontal extent of the grid, `(left edge, right edge)`.
    pub x_range: (f64, f64),
    /// The vertical extent of the grid; row 0 starts at `y_range.0`.
    pub y_range: (f64, f64),
    /// Number of columns (cells along x).
    pub cols: usize,
    /// Number of rows (cells along y).
    pub rows: usize,
    /// The cell values, row-major (`values[row * cols + col]`), `rows ×
    /// cols` of them, finite and not negative. Row 0 is at `y_range.0`.
    pub values: Vec<f64>,
    /// The y axis grows downward, like image coordinates: `y_range.0` (and
    /// row 0) is at the top. Otherwise it is at the bottom.
    pub y_down: bool,
    /// A rectangle `[x0, y0, x1, y1]` in data coordinates drawn dashed over
    /// the cells, such as the unit box.
    pub outline: Option<[f64; 4]>,
    /// A cross at a data point `(x, y)`, such as the mean.
    pub marker: Option<(f64, f64)>,
}

/// A line plot: one polyline with circle markers per series, and labelled
/// horizontal reference lines.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSpec {
    /// Title above the plot.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// The series, one color each.
    pub series: Vec<LineSeries>,
    /// Dashed horizontal reference lines `(label, y)`, named in the legend.
    pub hlines: Vec<(String, f64)>,
    /// A fixed y axis `(low, high)`; otherwise the axis covers the points
    /// and the reference lines.
    pub y_range: Option<(f64, f64)>,
}

/// One series of a [`LineSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct LineSeries {
    /// Name shown in the legend and the tooltips.
    pub name: String,
    /// The points `(x, y)`, connected in this order.
    pub points: Vec<(f64, f64)>,
}

// ---------------------------------------------------------------------------
// Least squares.

/// Ordinary least squares fit of `y = a + b·x`.
///
/// Returns `(intercept a, slope b, R²)`, or `None` when there are fewer than
/// two points, a coordinate is not finite, or all x are equal. R² is the
/// squared correlation of x and y; it is 1 when all y are equal (the fit is
/// exact).
pub fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    if points.len() < 2 || points.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in points {
        let (dx, dy) = (x - mx, y - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let r2 = if syy <= 0.0 { 1.0 } else { (sxy * sxy / (sxx * syy)).clamp(0.0, 1.0) };
    Some((intercept, slope, r2))
}

// ---------------------------------------------------------------------------
// Axes.

/// A "nice" axis: from `min` to `max` in steps of `step` (1, 2 or 5 times a
/// power of ten), both bounds multiples of the step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    min: f64,
    max: f64,
    step: f64,
}

impl Axis {
    /// A nice axis covering `[lo, hi]` with about `target` intervals.
    fn covering(lo: f64, hi: f64, target: usize) -> Axis {
        let (lo, hi) = if hi - lo > 0.0 {
            (lo, hi)
        } else {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.05 };
            (lo - pad, hi + pad)
        };
        let target = target.max(1) as f64;
        let raw = (hi - lo) / target;
        let mag = if raw.is_finite() && raw > 0.0 { 10f64.powf(raw.log10().floor()) } else { 1.0 };
        // The smallest 1-2-5 step that gives at most `target + 2` intervals.
        let mut axis = Axis { min: lo, max: hi, step: mag };
        for m in [1.0, 2.0, 5.0, 10.0, 20.0, 50.0] {
            let step = m * mag;
            let min = (lo / step).floor() * step;
            let max = (hi / step).ceil() * step;
            axis = Axis { min, max, step };
            if (max - min) / step <= target + 2.5 {
                break;
            }
        }
        axis
    }

    /// An axis from exactly `lo` to `hi` (`lo < hi`, not necessarily
    /// multiples of the step) with the smallest 1-2-5 step that gives at
    /// most about `target` intervals between them.
    fn exact(lo: f64, hi: f64, target: usize) -> Axis {
        let target = target.max(1) as f64;
        let raw = (hi - lo) / target;
        let mag = if raw.is_finite() && raw > 0.0 { 10f64.powf(raw.log10().floor()) } else { 1.0 };
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|&step| (hi - lo) / step <= target + 2.5)
            .unwrap_or(10.0 * mag);
        Axis { min: lo, max: hi, step }
    }

    /// The tick values: the multiples of the step in `[min, max]`.
    fn ticks(&self) -> Vec<f64> {
        let eps = 1e-6;
        // The first multiple of the step at or above `min` (`min` itself
        // when it is one, as on a covering axis).
        let k0 = (self.min / self.step - eps).ceil();
        let first = if (k0 * self.step - self.min).abs() <= self.step * eps { self.min } else { k0 * self.step };
        let n = ((self.max - first) / self.step + eps).floor();
        if n.is_nan() || n < 0.0 {
            return Vec::new();
        }
        (0..=(n as i64).min(1000)).map(|k| first + k as f64 * self.step).collect()
    }

    /// Decimals needed to tell ticks apart.
    fn decimals(&self) -> usize {
        (-self.step.log10().floor()).max(0.0) as usize
    }

    fn label(&self, v: f64) -> String {
        // Adding 0.0 turns -0.0 into 0.0.
        let v = if v.abs() < self.step * 1e-9 { 0.0 } else { v + 0.0 };
        format!("{:.*}", self.decimals(), v)
    }
}

/// Maps data coordinates to SVG coordinates inside a plot rectangle.
#[derive(Debug, Clone, Copy)]
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x: Axis,
    y: Axis,
    /// The y axis grows downward (`y.min` at the top), as in images.
    y_down: bool,
}

impl Frame {
    fn sx(&self, x: f64) -> f64 {
        self.left + (x - self.x.min) / (self.x.max - self.x.min) * (self.right - self.left)
    }
    fn sy(&self, y: f64) -> f64 {
        let t = (y - self.y.min) / (self.y.max - self.y.min) * (self.bottom - self.top);
        if self.y_down {
            self.top + t
        } else {
            self.bottom - t
        }
    }
    /// Whether the data point lies on the axes' ranges (with a little slack
    /// for rounding).
    fn contains(&self, (x, y): (f64, f64)) -> bool {
        let sx = (self.x.max - self.x.min) * 1e-9;
        let sy = (self.y.max - self.y.min) * 1e-9;
        x >= self.x.min - sx && x <= self.x.max + sx && y >= self.y.min - sy && y <= self.y.max + sy
    }
}

/// Clips the segment `a`–`b` to the rectangle `[x0, x1] × [y0, y1]`
/// (Liang–Barsky). `None` when nothing of it is inside.
fn clip_segment(a: (f64, f64), b: (f64, f64), x0: f64, x1: f64, y0: f64, y1: f64) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let mut t0 = 0.0f64;
    let mut t1 = 1.0f64;
    for (p, q) in [(-dx, a.0 - x0), (dx, x1 - a.0), (-dy, a.1 - y0), (dy, y1 - a.1)] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    if t0 > t1 {
        return None;
    }
    Some(((a.0 + t0 * dx, a.1 + t0 * dy), (a.0 + t1 * dx, a.1 + t1 * dy)))
}

// ---------------------------------------------------------------------------
// SVG writing.

/// Estimated advance width of `s` in DejaVu Sans at `size` pixels (the
/// widest of the fonts named in [`FONT_FAMILY`]).
fn text_width(s: &str, size: f64) -> f64 {
    let em: f64 = s
        .chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | 'I' => 0.3,
            ' ' | 'f' | 't' | 'r' | '(' | ')' | '[' | ']' | '-' | '/' => 0.4,
            'm' | 'w' | 'M' | 'W' | '@' | '%' => 0.9,
            'A'..='Z' | '=' | '<' | '>' | '+' | '~' | '_' | '#' | '&' => 0.74,
            _ => 0.62,
        })
        .sum();
    em * size
}

/// A tiny SVG writer.
struct Svg {
    out: String,
    width: f64,
    height: f64,
}

impl Svg {
    fn new(width: f64, height: f64) -> Svg {
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT_FAMILY}">"#,
            w = width.ceil(),
            h = height.ceil()
        );
        out.push('\n');
        let _ = writeln!(
            out,
            r##"<rect x="0" y="0" width="{}" height="{}" fill="#ffffff"/>"##,
            width.ceil(),
            height.ceil()
        );
        Svg { out, width, height }
    }

    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, style: &str) {
        let _ = writeln!(self.out, r#"<line x1="{x1:.2}" y1="{y1:.2}" x2="{x2:.2}" y2="{y2:.2}" {style}/>"#);
    }

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, style: &str) {
        let _ = writeln!(self.out, r#"<rect x="{x:.2}" y="{y:.2}" width="{w:.2}" height="{h:.2}" {style}/>"#);
    }

    /// A rectangle with a tooltip.
    fn rect_titled(&mut self, x: f64, y: f64, w: f64, h: f64, style: &str, title: &str) {
        let _ = writeln!(
            self.out,
            r#"<rect x="{x:.2}" y="{y:.2}" width="{w:.2}" height="{h:.2}" {style}><title>{}</title></rect>"#,
            escape_xml(title)
        );
    }

    fn circle(&mut self, cx: f64, cy: f64, r: f64, style: &str) {
        let _ = writeln!(self.out, r#"<circle cx="{cx:.2}" cy="{cy:.2}" r="{r:.2}" {style}/>"#);
    }

    /// A circle with a tooltip.
    fn circle_titled(&mut self, cx: f64, cy: f64, r: f64, style: &str, title: &str) {
        let _ = writeln!(
            self.out,
            r#"<circle cx="{cx:.2}" cy="{cy:.2}" r="{r:.2}" {style}><title>{}</title></circle>"#,
            escape_xml(title)
        );
    }

    /// A polyline through `points` (SVG coordinates).
    fn polyline(&mut self, points: &[(f64, f64)], style: &str) {
        let mut pts = String::new();
        for (i, (x, y)) in points.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            let _ = write!(pts, "{sep}{x:.2},{y:.2}");
        }
        let _ = writeln!(self.out, r#"<polyline points="{pts}" {style}/>"#);
    }

    /// Opens a group holding a tooltip for all its children; close it with
    /// [`Svg::end_group`].
    fn group_titled(&mut self, attrs: &str, title: &str) {
        let sep = if attrs.is_empty() { "" } else { " " };
        let _ = writeln!(self.out, "<g{sep}{attrs}><title>{}</title>", escape_xml(title));
    }

    /// Opens a group without a tooltip.
    fn group(&mut self, attrs: &str) {
        let sep = if attrs.is_empty() { "" } else { " " };
        let _ = writeln!(self.out, "<g{sep}{attrs}>");
    }

    fn end_group(&mut self) {
        self.out.push_str("</g>\n");
    }

    /// Text at (x, y) (baseline), `anchor` one of start/middle/end.
    fn text(&mut self, x: f64, y: f64, size: f64, anchor: &str, content: &str, extra: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{x:.2}" y="{y:.2}" font-size="{size:.1}" text-anchor="{anchor}" {extra}>{}</text>"#,
            escape_xml(content)
        );
    }

    /// Title centered at the top, shrunk to fit the width.
    fn title(&mut self, title: &str) {
        let mut size = 16.0;
        let avail = self.width - 20.0;
        // Bold text is about 12% wider.
        let w = text_width(title, size) * 1.12;
        if w > avail {
            size = (size * avail / w).max(8.0);
        }
        self.text(self.width / 2.0, 28.0, size, "middle", title, r##"font-weight="bold" fill="#222222""##);
    }

    fn finish(mut self) -> String {
        let _ = self.height;
        self.out.push_str("</svg>\n");
        self.out
    }
}

const AXIS_STYLE: &str = r##"stroke="#444444" stroke-width="1""##;
const GRID_STYLE: &str = r##"stroke="#e3e3e3" stroke-width="1""##;
const TICK_FONT: f64 = 12.0;
const LABEL_FONT: f64 = 13.0;
const POINT_FONT: f64 = 11.0;
const PALETTE: [&str; 10] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

/// Draws gridlines, the frame, ticks and tick labels of both axes.
fn draw_axes(svg: &mut Svg, f: &Frame, x_ticks: bool) {
    let (xt, yt) = (if x_ticks { tick_list(&f.x) } else { Vec::new() }, tick_list(&f.y));
    draw_grid(svg, f, &xt, &yt);
    draw_frame(svg, f, &xt, &yt);
}

/// The ticks of `axis` with their labels.
fn tick_list(axis: &Axis) -> Vec<(f64, String)> {
    axis.ticks().into_iter().map(|t| (t, axis.label(t))).collect()
}

/// Draws the gridlines at the ticks `xt` (vertical) and `yt` (horizontal), in data units.
fn draw_grid(svg: &mut Svg, f: &Frame, xt: &[(f64, String)], yt: &[(f64, String)]) {
    for (t, _) in yt {
        let y = f.sy(*t);
        svg.line(f.left, y, f.right, y, GRID_STYLE);
    }
    for (t, _) in xt {
        let x = f.sx(*t);
        svg.line(x, f.top, x, f.bottom, GRID_STYLE);
    }
}

/// Draws the frame, and the ticks `xt` / `yt` with their labels.
fn draw_frame(svg: &mut Svg, f: &Frame, xt: &[(f64, String)], yt: &[(f64, String)]) {
    svg.rect(f.left, f.top, f.right - f.left, f.bottom - f.top, r##"fill="none" stroke="#444444" stroke-width="1""##);
    for (t, label) in yt {
        let y = f.sy(*t);
        svg.line(f.left - 5.0, y, f.left, y, AXIS_STYLE);
        svg.text(f.left - 8.0, y + TICK_FONT * 0.35, TICK_FONT, "end", label, r##"fill="#333333""##);
    }
    for (t, label) in xt {
        let x = f.sx(*t);
        svg.line(x, f.bottom, x, f.bottom + 5.0, AXIS_STYLE);
        svg.text(x, f.bottom + 8.0 + TICK_FONT, TICK_FONT, "middle", label, r##"fill="#333333""##);
    }
}

/// The widest tick label of `axis`.
fn tick_label_width(axis: &Axis) -> f64 {
    axis.ticks().iter().map(|&t| text_width(&axis.label(t), TICK_FONT)).fold(0.0, f64::max)
}

/// The left margin that leaves room for the y tick labels (`y_tick_w`
/// wide) and the rotated y-axis label.
fn left_margin(y_tick_w: f64) -> f64 {
    (22.0 + LABEL_FONT + 10.0 + y_tick_w + 8.0).max(64.0)
}

/// The x-axis label, centered under the plot, baseline at `y`.
fn x_axis_label(svg: &mut Svg, f: &Frame, label: &str, y: f64) {
    svg.text((f.left + f.right) / 2.0, y, LABEL_FONT, "middle", label, r##"fill="#222222""##);
}

/// The y-axis label, rotated, centered on the plot's height.
fn y_axis_label(svg: &mut Svg, f: &Frame, label: &str, x: f64) {
    let cy = (f.top + f.bottom) / 2.0;
    let avail = f.bottom - f.top + 40.0;
    let mut size = LABEL_FONT;
    let w = text_width(label, size);
    if w > avail {
        size = (size * avail / w).max(7.0);
    }
    svg.text(x, cy, size, "middle", label, &format!(r##"transform="rotate(-90 {x:.2} {cy:.2})" fill="#222222""##));
}

/// `v` with about `sig` significant digits (at least 2 decimals below 100).
fn fmt_sig(v: f64, sig: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (sig - 1 - v.abs().log10().floor() as i32).clamp(0, 12);
    format!("{:.*}", decimals as usize, v)
}

fn check_finite(what: &str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite(format!("{what} is {v}")))
    }
}

fn ordered(ci: (f64, f64)) -> (f64, f64) {
    (ci.0.min(ci.1), ci.0.max(ci.1))
}

// ---------------------------------------------------------------------------
// Scatter plot.

/// An axis-aligned box in SVG coordinates.
#[derive(Debug, Clone, Copy)]
struct BoxF {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl BoxF {
    fn overlap(&self, o: &BoxF) -> f64 {
        let w = (self.x1.min(o.x1) - self.x0.max(o.x0)).max(0.0);
        let h = (self.y1.min(o.y1) - self.y0.max(o.y0)).max(0.0);
        w * h
    }
    /// Area of `self` outside `o`.
    fn outside(&self, o: &BoxF) -> f64 {
        (self.x1 - self.x0) * (self.y1 - self.y0) - self.overlap(o)
    }
}

/// Draws each non-empty label `(text, x, y)` next to its point at screen
/// position `(x, y)`, greedily in order: of eight places around the point
/// (right, left, above, below, then the diagonals) the one that overlaps the
/// least with `obstacles` (points, the legend, labels placed before it) and
/// stays inside `plot_box`, or, when all of them overlap, the same places
/// farther out with a thin leader line to the point; a label wider than the
/// room left is shifted inside. Every placed label becomes an obstacle for
/// the next.
fn place_labels(svg: &mut Svg, labels: &[(&str, f64, f64)], obstacles: &mut Vec<BoxF>, plot_box: &BoxF) {
    let fs = POINT_FONT;
    // Glyph extent above and below the baseline, plus the white halo.
    let asc = fs * 0.8 + 1.5;
    let desc = fs * 0.25 + 1.5;
    for &(label, x, y) in labels {
        if label.is_empty() {
            continue;
        }
        let w = text_width(label, fs);
        // (anchor, baseline x, baseline y, leader line): eight places next to the point, then
        // the same eight farther out (`e` more pixels away), joined to the point by a thin line.
        let mut candidates: Vec<(&str, f64, f64, bool)> = Vec::with_capacity(24);
        for e in [0.0, 16.0, 34.0] {
            let d = e * 0.7;
            candidates.extend([
                ("start", x + 7.0 + e, y + asc * 0.4, e > 0.0),
                ("end", x - 7.0 - e, y + asc * 0.4, e > 0.0),
                ("middle", x, y - 8.0 - e, e > 0.0),
                ("middle", x, y + 8.0 + asc + e, e > 0.0),
                ("start", x + 5.0 + d, y - 5.0 - d, e > 0.0),
                ("start", x + 5.0 + d, y + 5.0 + asc + d, e > 0.0),
                ("end", x - 5.0 - d, y - 5.0 - d, e > 0.0),
                ("end", x - 5.0 - d, y + 5.0 + asc + d, e > 0.0),
            ]);
        }
        let mut best: Option<(f64, &str, f64, f64, BoxF, bool)> = None;
        for (anchor, tx, ty, leader) in candidates {
            let x0 = match anchor {
                "start" => tx,
                "end" => tx - w,
                _ => tx - w / 2.0,
            };
            let b = BoxF { x0: x0 - 1.5, y0: ty - asc, x1: x0 + w + 1.5, y1: ty + desc };
            let out = b.outside(plot_box);
            let overlap: f64 = obstacles.iter().map(|o| o.overlap(&b)).sum();
            let score = out * 100.0 + overlap;
            // Strictly better only: of equally good places the nearest wins.
            if best.as_ref().is_none_or(|bb| score < bb.0 - 1e-9) {
                best = Some((score, anchor, tx, ty, b, leader));
            }
        }
        if let Some((_, anchor, mut tx, ty, mut b, leader)) = best {
            // A label wider than the room left: shift it inside horizontally.
            let shift = if b.x0 < plot_box.x0 {
                plot_box.x0 - b.x0
            } else if b.x1 > plot_box.x1 {
                plot_box.x1 - b.x1
            } else {
                0.0
            };
            tx += shift;
            b.x0 += shift;
            b.x1 += shift;
            if leader {
                // From the point's edge to the nearest point of the label's box.
                let (nx, ny) = (x.clamp(b.x0, b.x1), y.clamp(b.y0, b.y1));
                let len = (nx - x).hypot(ny - y);
                if len > 6.0 {
                    let (ux, uy) = ((nx - x) / len, (ny - y) / len);
                    svg.line(x + 5.0 * ux, y + 5.0 * uy, nx, ny, r##"stroke="#888888" stroke-width="0.8""##);
                }
            }
            svg.text(
                tx,
                ty,
                fs,
                anchor,
                label,
                r##"fill="#222222" stroke="#ffffff" stroke-width="3" stroke-opacity="0.8" paint-order="stroke""##,
            );
            obstacles.push(b);
        }
    }
}

/// Renders a scatter plot as SVG.
///
/// Axes get "nice" ticks (steps of 1, 2 or 5 times a power of ten) with
/// gridlines; both ranges cover the points and their intervals. Each point
/// is labelled with its `label`, placed where it overlaps the least with
/// other labels, points and the legend, inside the plot area. Intervals are
/// drawn as error bars. With `diagonal` the dashed `y = x` line is drawn
/// (clipped to the plot area) and both axes share one range; with `fit` the
/// least-squares line is drawn and the legend gives `y = a + b·x` and R².
///
/// Errors: [`Error::Empty`] without points, [`Error::NonFinite`] for a NaN
/// or infinite coordinate or interval bound.
pub fn scatter_svg(spec: &ScatterSpec) -> Result<String> {
    if spec.points.is_empty() {
        return Err(Error::Empty(format!("scatter plot {:?} has no points", spec.title)));
    }
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for p in &spec.points {
        check_finite(&format!("x of point {:?}", p.label), p.x)?;
        check_finite(&format!("y of point {:?}", p.label), p.y)?;
        xs.push(p.x);
        ys.push(p.y);
        if let Some((lo, hi)) = p.x_ci {
            check_finite(&format!("x interval of point {:?}", p.label), lo)?;
            check_finite(&format!("x interval of point {:?}", p.label), hi)?;
            xs.extend([lo, hi]);
        }
        if let Some((lo, hi)) = p.y_ci {
            check_finite(&format!("y interval of point {:?}", p.label), lo)?;
            check_finite(&format!("y interval of point {:?}", p.label), hi)?;
            ys.extend([lo, hi]);
        }
    }
    let range = |v: &[f64]| v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let (mut x_lo, mut x_hi) = range(&xs);
    let (mut y_lo, mut y_hi) = range(&ys);
    if spec.diagonal {
        x_lo = x_lo.min(y_lo);
        y_lo = x_lo;
        x_hi = x_hi.max(y_hi);
        y_hi = x_hi;
    }
    // A little room so that points do not sit on the frame.
    let pad = |lo: f64, hi: f64| {
        let p = (hi - lo) * 0.04;
        (lo - p, hi + p)
    };
    let (x_lo, x_hi) = pad(x_lo, x_hi);
    let (y_lo, y_hi) = pad(y_lo, y_hi);
    let x_axis = Axis::covering(x_lo, x_hi, 6);
    let y_axis = Axis::covering(y_lo, y_hi, 6);

    let (width, height) = (760.0, 580.0);
    let y_tick_w = tick_label_width(&y_axis);
    let left = left_margin(y_tick_w);
    let f = Frame { left, right: width - 24.0, top: 50.0, bottom: height - 62.0, x: x_axis, y: y_axis, y_down: false };
    let plot_box = BoxF { x0: f.left + 2.0, y0: f.top + 2.0, x1: f.right - 2.0, y1: f.bottom - 2.0 };

    let mut svg = Svg::new(width, height);
    draw_axes(&mut svg, &f, true);

    // Lines: y = x and the fit.
    let mut legend: Vec<(&str, String)> = Vec::new();
    let (bx0, bx1, by0, by1) = (f.x.min, f.x.max, f.y.min, f.y.max);
    if spec.diagonal {
        let lo = bx0.min(by0);
        let hi = bx1.max(by1);
        if let Some((a, b)) = clip_segment((lo, lo), (hi, hi), bx0, bx1, by0, by1) {
            svg.line(
                f.sx(a.0),
                f.sy(a.1),
                f.sx(b.0),
                f.sy(b.1),
                r##"stroke="#777777" stroke-width="1.5" stroke-dasharray="7 5""##,
            );
        }
        legend.push((r##"stroke="#777777" stroke-width="1.5" stroke-dasharray="7 5""##, "y = x".to_string()));
    }
    if spec.fit {
        let pts: Vec<(f64, f64)> = spec.points.iter().map(|p| (p.x, p.y)).collect();
        if let Some((a, b, r2)) = least_squares(&pts) {
            let style = r##"stroke="#d62728" stroke-width="2""##;
            if let Some((p, q)) = clip_segment((bx0, a + b * bx0), (bx1, a + b * bx1), bx0, bx1, by0, by1) {
                svg.line(f.sx(p.0), f.sy(p.1), f.sx(q.0), f.sy(q.1), style);
            }
            let sign = if b < 0.0 { '−' } else { '+' };
            legend.push((style, format!("fit: y = {} {sign} {}·x (R² = {r2:.3})", fmt_sig(a, 4), fmt_sig(b.abs(), 3))));
        }
    }

    // Screen positions of the points.
    let screen: Vec<(f64, f64)> = spec.points.iter().map(|p| (f.sx(p.x), f.sy(p.y))).collect();
    let mut obstacles: Vec<BoxF> =
        screen.iter().map(|&(x, y)| BoxF { x0: x - 5.0, y0: y - 5.0, x1: x + 5.0, y1: y + 5.0 }).collect();

    // Legend, in the corner with the fewest points.
    if !legend.is_empty() {
        let row_h = 20.0;
        let text_w = legend.iter().map(|(_, t)| text_width(t, 12.0)).fold(0.0, f64::max);
        let lw = 10.0 + 30.0 + 8.0 + text_w + 10.0;
        let lh = 8.0 + row_h * legend.len() as f64;
        let inset = 10.0;
        let corners = [
            (f.left + inset, f.top + inset),
            (f.right - inset - lw, f.bottom - inset - lh),
            (f.right - inset - lw, f.top + inset),
            (f.left + inset, f.bottom - inset - lh),
        ];
        let mut best = corners[0];
        let mut best_score = f64::INFINITY;
        for &(x, y) in &corners {
            let b = BoxF { x0: x, y0: y, x1: x + lw, y1: y + lh };
            // Points inside the box, plus room their labels need.
            let score: f64 = obstacles
                .iter()
                .map(|o| {
                    let grown = BoxF { x0: o.x0 - 8.0, y0: o.y0 - 8.0, x1: o.x1 + 60.0, y1: o.y1 + 8.0 };
                    if grown.overlap(&b) > 0.0 {
                        1.0
                    } else {
                        0.0
                    }
                })
                .sum();
            if score < best_score {
                best_score = score;
                best = (x, y);
            }
        }
        let (lx, ly) = best;
        svg.rect(lx, ly, lw, lh, r##"fill="#ffffff" fill-opacity="0.9" stroke="#bbbbbb" stroke-width="1" rx="3""##);
        for (i, (style, text)) in legend.iter().enumerate() {
            let cy = ly + 4.0 + row_h * (i as f64 + 0.5);
            svg.line(lx + 10.0, cy, lx + 40.0, cy, style);
            svg.text(lx + 48.0, cy + 4.0, 12.0, "start", text, r##"fill="#222222""##);
        }
        obstacles.push(BoxF { x0: lx, y0: ly, x1: lx + lw, y1: ly + lh });
    }

    // Error bars.
    let bar_style = r##"stroke="#1f77b4" stroke-opacity="0.55" stroke-width="1.2""##;
    for (p, &(x, y)) in spec.points.iter().zip(&screen) {
        if let Some(ci) = p.x_ci {
            let (lo, hi) = ordered(ci);
            let (a, b) = (f.sx(lo), f.sx(hi));
            svg.line(a, y, b, y, bar_style);
            svg.line(a, y - 3.0, a, y + 3.0, bar_style);
            svg.line(b, y - 3.0, b, y + 3.0, bar_style);
        }
        if let Some(ci) = p.y_ci {
            let (lo, hi) = ordered(ci);
            let (a, b) = (f.sy(lo), f.sy(hi));
            svg.line(x, a, x, b, bar_style);
            svg.line(x - 3.0, a, x + 3.0, a, bar_style);
            svg.line(x - 3.0, b, x + 3.0, b, bar_style);
        }
    }
    for &(x, y) in &screen {
        svg.circle(x, y, 4.5, r##"fill="#1f77b4" stroke="#ffffff" stroke-width="1""##);
    }

    // Labels, greedily placed.
    let labels: Vec<(&str, f64, f64)> =
        spec.points.iter().zip(&screen).map(|(p, &(x, y))| (p.label.as_str(), x, y)).collect();
    place_labels(&mut svg, &labels, &mut obstacles, &plot_box);

    svg.title(&spec.title);
    x_axis_label(&mut svg, &f, &spec.x_label, height - 18.0);
    y_axis_label(&mut svg, &f, &spec.y_label, f.left - 8.0 - y_tick_w - 12.0);
    Ok(svg.finish())
}

// ---------------------------------------------------------------------------
// Bars.

/// Renders a grouped bar chart as SVG.
///
/// One group per category along the horizontal axis and one bar per series
/// inside each group, colored by series, with a legend right of the plot.
/// The vertical axis starts at zero (or below, for negative values) and has
/// nice ticks; intervals are drawn as whiskers. Long category names are
/// drawn slanted. A `None` value draws no bar.
///
/// Errors: [`Error::Empty`] without categories, series or values;
/// [`Error::Invalid`] when a series has a different number of values (or
/// non-empty intervals) than there are categories; [`Error::NonFinite`] for
/// NaN or infinite values or bounds.
pub fn bars_svg(spec: &BarSpec) -> Result<String> {
    if spec.categories.is_empty() {
        return Err(Error::Empty(format!("bar chart {:?} has no categories", spec.title)));
    }
    if spec.series.is_empty() {
        return Err(Error::Empty(format!("bar chart {:?} has no series", spec.title)));
    }
    let nc = spec.categories.len();
    let mut lo = 0.0f64;
    let mut hi = 0.0f64;
    let mut any = false;
    for s in &spec.series {
        if s.values.len() != nc {
            return Err(Error::Invalid(format!(
                "series {:?} has {} values for {} categories",
                s.name,
                s.values.len(),
                nc
            )));
        }
        if !s.ci.is_empty() && s.ci.len() != nc {
            return Err(Error::Invalid(format!(
                "series {:?} has {} intervals for {} categories",
                s.name,
                s.ci.len(),
                nc
            )));
        }
        for (c, v) in s.values.iter().enumerate() {
            if let Some(v) = *v {
                check_finite(&format!("value of {:?} at {:?}", s.name, spec.categories[c]), v)?;
                lo = lo.min(v);
                hi = hi.max(v);
                any = true;
            }
        }
        for (c, ci) in s.ci.iter().enumerate() {
            if let Some((a, b)) = *ci {
                let what = format!("interval of {:?} at {:?}", s.name, spec.categories[c]);
                check_finite(&what, a)?;
                check_finite(&what, b)?;
                lo = lo.min(a.min(b));
                hi = hi.max(a.max(b));
            }
        }
    }
    if !any {
        return Err(Error::Empty(format!("bar chart {:?} has no values", spec.title)));
    }
    let head = (hi - lo) * 0.03;
    let y_axis = Axis::covering(if lo < 0.0 { lo - head } else { 0.0 }, if hi > 0.0 { hi + head } else { 0.0 }, 6);

    let ns = spec.series.len();
    let gap = 24.0;
    // Bars 18 wide, wider (up to 56) when there are few, narrower (down to
    // 3) when there are very many; the plot is at least 420 wide.
    let nbars = (ns * nc) as f64;
    let bar_w = if nbars * 18.0 + gap * nc as f64 > 1400.0 {
        ((1400.0 / nc as f64 - gap) / ns as f64).max(3.0)
    } else {
        ((420.0 / nc as f64 - gap) / ns as f64).clamp(18.0, 56.0)
    };
    let group_w = (ns as f64 * bar_w + gap).max(420.0 / nc as f64);
    let plot_w = group_w * nc as f64;

    let cat_font = TICK_FONT;
    let max_cat_w = spec.categories.iter().map(|c| text_width(c, cat_font)).fold(0.0, f64::max);
    let slant = max_cat_w > group_w - 6.0;
    let (sin, cos) = (35f64.to_radians().sin(), 35f64.to_radians().cos());
    let cat_h = if slant { max_cat_w * sin + cat_font * cos + 6.0 } else { cat_font + 6.0 };

    let legend_font = 12.0;
    let legend_w = 18.0 + 8.0 + spec.series.iter().map(|s| text_width(&s.name, legend_font)).fold(0.0, f64::max) + 12.0;
    let legend_h = 12.0 + 20.0 * ns as f64;

    let y_tick_w = tick_label_width(&y_axis);
    let left = left_margin(y_tick_w);
    // Slanted labels reach left of their group: keep them on the canvas.
    let left = if slant { left.max(max_cat_w * cos - group_w / 2.0 + 10.0) } else { left };
    let top = 50.0;
    let plot_h = (legend_h).max(340.0);
    let bottom = top + plot_h;
    let width = left + plot_w + 20.0 + legend_w + 16.0;
    let height = bottom + 8.0 + cat_h + 30.0;
    let f = Frame {
        left,
        right: left + plot_w,
        top,
        bottom,
        x: Axis { min: 0.0, max: nc as f64, step: 1.0 },
        y: y_axis,
        y_down: false,
    };

    let mut svg = Svg::new(width, height);
    draw_axes(&mut svg, &f, false);
    let zero = f.sy(0.0);
    if y_axis.min < 0.0 {
        svg.line(f.left, zero, f.right, zero, AXIS_STYLE);
    }
    for (c, name) in spec.categories.iter().enumerate() {
        let gx = f.left + group_w * c as f64 + (group_w - ns as f64 * bar_w) / 2.0;
        for (k, s) in spec.series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let x = gx + bar_w * k as f64;
            if let Some(v) = s.values[c] {
                let y = f.sy(v);
                let (y0, h) = if y < zero { (y, zero - y) } else { (zero, y - zero) };
                svg.rect(
                    x + 0.5,
                    y0,
                    (bar_w - 1.0).max(1.0),
                    h,
                    &format!(r##"fill="{color}" stroke="#ffffff" stroke-width="0.5""##),
                );
            }
            if let Some(Some(ci)) = s.ci.get(c) {
                let (a, b) = ordered(*ci);
                let cx = x + bar_w / 2.0;
                let cap = (bar_w * 0.3).clamp(1.5, 5.0);
                let style = r##"stroke="#222222" stroke-width="1.2""##;
                svg.line(cx, f.sy(a), cx, f.sy(b), style);
                svg.line(cx - cap, f.sy(a), cx + cap, f.sy(a), style);
                svg.line(cx - cap, f.sy(b), cx + cap, f.sy(b), style);
            }
        }
        let cx = f.left + group_w * (c as f64 + 0.5);
        svg.line(cx, f.bottom, cx, f.bottom + 5.0, AXIS_STYLE);
        if slant {
            let ty = f.bottom + 8.0 + cat_font * 0.8;
            svg.text(
                cx,
                ty,
                cat_font,
                "end",
                name,
                &format!(r##"transform="rotate(-35 {cx:.2} {ty:.2})" fill="#333333""##),
            );
        } else {
            svg.text(cx, f.bottom + 8.0 + cat_font, cat_font, "middle", name, r##"fill="#333333""##);
        }
    }
    // Legend right of the plot.
    let lx = f.right + 20.0;
    let ly = f.top;
    svg.rect(lx, ly, legend_w, legend_h, r##"fill="#ffffff" stroke="#bbbbbb" stroke-width="1" rx="3""##);
    for (k, s) in spec.series.iter().enumerate() {
        let cy = ly + 6.0 + 20.0 * (k as f64 + 0.5);
        let color = PALETTE[k % PALETTE.len()];
        svg.rect(lx + 8.0, cy - 6.0, 12.0, 12.0, &format!(r#"fill="{color}""#));
        svg.text(lx + 26.0, cy + 4.0, legend_font, "start", &s.name, r##"fill="#222222""##);
    }
    svg.title(&spec.title);
    y_axis_label(&mut svg, &f, &spec.y_label, f.left - 8.0 - y_tick_w - 12.0);
    Ok(svg.finish())
}

// ---------------------------------------------------------------------------
// Heat map.

/// The stops of the heat map's sequential color scale, from the color of 0
/// (light yellow) to the color of the largest value (dark blue).
const HEAT_STOPS: [(u8, u8, u8); 5] =
    [(0xff, 0xff, 0xd9), (0xc7, 0xe9, 0xb4), (0x41, 0xb6, 0xc4), (0x22, 0x5e, 0xa8), (0x08, 0x1d, 0x58)];

/// The color of `t` in `[0, 1]` on the heat map's scale, by linear
/// interpolation between [`HEAT_STOPS`], as `#rrggbb`.
fn heat_color(t: f64) -> String {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let pos = t * (HEAT_STOPS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(HEAT_STOPS.len() - 2);
    let frac = pos - i as f64;
    let (a, b) = (HEAT_STOPS[i], HEAT_STOPS[i + 1]);
    let mix = |p: u8, q: u8| (f64::from(p) + (f64::from(q) - f64::from(p)) * frac).round().clamp(0.0, 255.0) as u8;
    format!("#{:02x}{:02x}{:02x}", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// `v` for tooltips and legends: whole numbers as integers, others with at
/// most `sig` significant digits and no trailing zeros.
fn fmt_compact(v: f64, sig: i32) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let s = fmt_sig(v, sig);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Checks that `range` is finite and not empty.
fn check_range(what: &str, (lo, hi): (f64, f64)) -> Result<()> {
    check_finite(&format!("{what} start"), lo)?;
    check_finite(&format!("{what} end"), hi)?;
    if hi > lo {
        Ok(())
    } else {
        Err(Error::Invalid(format!("{what} ({lo}, {hi}) is empty: its end must be above its start")))
    }
}

/// Renders a heat map (2-D histogram) as SVG.
///
/// Each cell is a `<rect>` whose color comes from a sequential scale (light
/// yellow for 0 through green and blue to dark blue for the largest value,
/// interpolated linearly between fixed stops) and whose `<title>` tooltip
/// gives the cell's extent and value. A color bar right of the plot is
/// labelled with 0 and the largest value. The axes span exactly `x_range`
/// and `y_range`, with nice ticks; with `y_down` the y axis grows downward
/// (row 0 at the top). The `outline` is drawn as a dashed rectangle (the
/// part inside the ranges) and the `marker` as a cross (when inside the
/// ranges). All values 0 is fine: every cell gets the lightest color.
///
/// Errors: [`Error::Invalid`] when `rows` or `cols` is 0, `values` does not
/// hold `rows × cols` numbers, a range is empty or reversed, or a value is
/// negative; [`Error::NonFinite`] for a NaN or infinite value, range bound,
/// outline or marker coordinate.
pub fn heatmap_svg(spec: &HeatmapSpec) -> Result<String> {
    let (rows, cols) = (spec.rows, spec.cols);
    if rows == 0 || cols == 0 {
        return Err(Error::Invalid(format!("heat map {:?} has {rows} rows and {cols} columns", spec.title)));
    }
    if rows.checked_mul(cols) != Some(spec.values.len()) {
        return Err(Error::Invalid(format!(
            "heat map {:?} has {} values for {rows} rows × {cols} columns",
            spec.title,
            spec.values.len()
        )));
    }
    check_range("x range", spec.x_range)?;
    check_range("y range", spec.y_range)?;
    let mut max = 0.0f64;
    for (i, &v) in spec.values.iter().enumerate() {
        let what = format!("value of cell (row {}, column {})", i / cols, i % cols);
        check_finite(&what, v)?;
        if v < 0.0 {
            return Err(Error::Invalid(format!("{what} is negative ({v})")));
        }
        max = max.max(v);
    }
    if let Some(o) = spec.outline {
        for v in o {
            check_finite("outline coordinate", v)?;
        }
    }
    if let Some((x, y)) = spec.marker {
        check_finite("marker x", x)?;
        check_finite("marker y", y)?;
    }

    let (x0, x1) = spec.x_range;
    let (y0, y1) = spec.y_range;
    let x_axis = Axis::exact(x0, x1, 6);
    let y_axis = Axis::exact(y0, y1, 6);
    // The plot keeps the aspect of the data, within limits.
    let plot_w = 520.0;
    let plot_h = plot_w * ((y1 - y0) / (x1 - x0)).clamp(0.5, 1.25);
    let y_tick_w = tick_label_width(&y_axis);
    let left = left_margin(y_tick_w);
    let top = 50.0;
    let f = Frame { left, right: left + plot_w, top, bottom: top + plot_h, x: x_axis, y: y_axis, y_down: spec.y_down };

    let max_label = fmt_compact(max, 4);
    let bar_x = f.right + 24.0;
    let bar_w = 16.0;
    let legend_w = text_width(&max_label, TICK_FONT).max(text_width("0", TICK_FONT));
    let width = bar_x + bar_w + 6.0 + legend_w + 16.0;
    let height = f.bottom + 62.0;
    let mut svg = Svg::new(width, height);

    // Cells. Crisp edges leave no seams between neighbours.
    let (dx, dy) = ((x1 - x0) / cols as f64, (y1 - y0) / rows as f64);
    svg.group(r#"shape-rendering="crispEdges""#);
    for r in 0..rows {
        let (cy0, cy1) = (y0 + dy * r as f64, y0 + dy * (r + 1) as f64);
        let (sy0, sy1) = (f.sy(cy0), f.sy(cy1));
        for c in 0..cols {
            let v = spec.values[r * cols + c];
            let (cx0, cx1) = (x0 + dx * c as f64, x0 + dx * (c + 1) as f64);
            let (sx0, sx1) = (f.sx(cx0), f.sx(cx1));
            let color = heat_color(if max > 0.0 { v / max } else { 0.0 });
            let title = format!(
                "x [{}, {}), y [{}, {}): {}",
                fmt_compact(cx0, 4),
                fmt_compact(cx1, 4),
                fmt_compact(cy0, 4),
                fmt_compact(cy1, 4),
                fmt_compact(v, 6)
            );
            svg.rect_titled(
                sx0,
                sy0.min(sy1),
                sx1 - sx0,
                (sy1 - sy0).abs(),
                &format!(r#"fill="{color}" stroke="none""#),
                &title,
            );
        }
    }
    svg.end_group();
    draw_frame(&mut svg, &f, &tick_list(&f.x), &tick_list(&f.y));

    // The outline, clipped to the plot.
    if let Some([ox0, oy0, ox1, oy1]) = spec.outline {
        let title = format!(
            "outline [{}, {}] × [{}, {}]",
            fmt_compact(ox0, 6),
            fmt_compact(ox1, 6),
            fmt_compact(oy0, 6),
            fmt_compact(oy1, 6)
        );
        svg.group_titled(r##"stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 4""##, &title);
        let corners = [(ox0, oy0), (ox1, oy0), (ox1, oy1), (ox0, oy1)];
        for k in 0..4 {
            if let Some((a, b)) = clip_segment(corners[k], corners[(k + 1) % 4], x0, x1, y0, y1) {
                svg.line(f.sx(a.0), f.sy(a.1), f.sx(b.0), f.sy(b.1), "");
            }
        }
        svg.end_group();
    }
    // The marker: a cross with a white halo.
    if let Some((mx, my)) = spec.marker.filter(|&p| f.contains(p)) {
        let (px, py) = (f.sx(mx), f.sy(my));
        let s = 7.0;
        svg.group_titled("", &format!("marker ({}, {})", fmt_compact(mx, 6), fmt_compact(my, 6)));
        for style in [r##"stroke="#ffffff" stroke-width="4.5""##, r##"stroke="#d62728" stroke-width="2""##] {
            svg.line(px - s, py - s, px + s, py + s, style);
            svg.line(px - s, py + s, px + s, py - s, style);
        }
        svg.end_group();
    }

    // The color bar: 0 at the bottom, the largest value at the top.
    let steps = 48;
    let seg = plot_h / steps as f64;
    svg.group(r#"shape-rendering="crispEdges""#);
    for k in 0..steps {
        let t = (k as f64 + 0.5) / steps as f64;
        let y = f.bottom - seg * (k + 1) as f64;
        svg.rect(bar_x, y, bar_w, seg, &format!(r#"fill="{}" stroke="none""#, heat_color(t)));
    }
    svg.end_group();
    svg.rect(bar_x, f.top, bar_w, plot_h, r##"fill="none" stroke="#444444" stroke-width="1""##);
    let tx = bar_x + bar_w + 6.0;
    svg.text(tx, f.top + TICK_FONT * 0.35, TICK_FONT, "start", &max_label, r##"fill="#333333""##);
    svg.text(tx, f.bottom + TICK_FONT * 0.35, TICK_FONT, "start", "0", r##"fill="#333333""##);

    svg.title(&spec.title);
    x_axis_label(&mut svg, &f, &spec.x_label, height - 18.0);
    y_axis_label(&mut svg, &f, &spec.y_label, f.left - 8.0 - y_tick_w - 12.0);
    Ok(svg.finish())
}

// ---------------------------------------------------------------------------
// Line plot.

/// The dash patterns of reference lines, in turn.
const HLINE_DASHES: [&str; 4] = ["7 5", "2 3", "12 4 3 4", "4 2"];

fn hline_style(k: usize) -> String {
    format!(r##"stroke="#555555" stroke-width="1.5" stroke-dasharray="{}""##, HLINE_DASHES[k % HLINE_DASHES.len()])
}

/// The pieces of the polyline through `points` (data coordinates) that lie
/// inside the frame's ranges, each of at least two points.
fn clipped_runs(f: &Frame, points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let (bx0, bx1, by0, by1) = (f.x.min, f.x.max, f.y.min, f.y.max);
    let mut runs = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for w in points.windows(2) {
        match clip_segment(w[0], w[1], bx0, bx1, by0, by1) {
            Some((a, b)) => {
                // Continue the run when the segment starts where the last
                // one ended (inside the ranges).
                if cur.is_empty() || !f.contains(w[0]) {
                    if cur.len() >= 2 {
                        runs.push(std::mem::take(&mut cur));
                    }
                    cur = vec![a];
                }
                cur.push(if f.contains(w[1]) { w[1] } else { b });
            }
            None => {
                if cur.len() >= 2 {
                    runs.push(std::mem::take(&mut cur));
                }
                cur.clear();
            }
        }
    }
    if cur.len() >= 2 {
        runs.push(cur);
    }
    runs
}

/// Renders a line plot as SVG.
///
/// Each series is a polyline through its points (in the order given) with a
/// circle marker at every point, colored by series; a marker's `<title>`
/// tooltip gives the series and the coordinates. Each reference line is a
/// dashed horizontal line across the plot, labelled at its right end. The
/// legend right of the plot names the series and the reference lines. The
/// axes have nice ticks and gridlines; the x axis covers the points, the y
/// axis is `y_range` when set (parts of the lines outside it are clipped,
/// markers outside it left out), else it covers the points and the
/// reference lines. A series of one point draws only its marker; a series
/// without points only its legend entry.
///
/// Errors: [`Error::Empty`] without series or without any point;
/// [`Error::NonFinite`] for a NaN or infinite coordinate, reference value
/// or `y_range` bound; [`Error::Invalid`] for an empty or reversed
/// `y_range`.
pub fn lines_svg(spec: &LineSpec) -> Result<String> {
    if spec.series.is_empty() {
        return Err(Error::Empty(format!("line plot {:?} has no series", spec.title)));
    }
    let mut x_lo = f64::INFINITY;
    let mut x_hi = f64::NEG_INFINITY;
    let mut y_lo = f64::INFINITY;
    let mut y_hi = f64::NEG_INFINITY;
    for s in &spec.series {
        for (i, &(x, y)) in s.points.iter().enumerate() {
            check_finite(&format!("x of point {i} of series {:?}", s.name), x)?;
            check_finite(&format!("y of point {i} of series {:?}", s.name), y)?;
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x);
            y_lo = y_lo.min(y);
            y_hi = y_hi.max(y);
        }
    }
    if x_lo > x_hi {
        return Err(Error::Empty(format!("line plot {:?} has no points", spec.title)));
    }
    for (label, v) in &spec.hlines {
        check_finite(&format!("reference line {label:?}"), *v)?;
        y_lo = y_lo.min(*v);
        y_hi = y_hi.max(*v);
    }
    let x_axis = Axis::covering(x_lo, x_hi, 6);
    let y_axis = match spec.y_range {
        Some(r) => {
            check_range("y range", r)?;
            Axis::exact(r.0, r.1, 6)
        }
        None => {
            let mut a = Axis::covering(y_lo, y_hi, 6);
            // A reference line on the frame would be hidden by it.
            let on = |b: f64| spec.hlines.iter().any(|(_, v)| (v - b).abs() <= a.step * 1e-9);
            if on(a.min) {
                a.min -= a.step;
            }
            if on(a.max) {
                a.max += a.step;
            }
            a
        }
    };

    let legend_font = 12.0;
    let names = spec.series.iter().map(|s| s.name.as_str()).chain(spec.hlines.iter().map(|(l, _)| l.as_str()));
    let legend_w = 10.0 + 30.0 + 8.0 + names.map(|n| text_width(n, legend_font)).fold(0.0, f64::max) + 10.0;
    let entries = spec.series.len() + spec.hlines.len();
    let legend_h = 8.0 + 20.0 * entries as f64;

    let y_tick_w = tick_label_width(&y_axis);
    let left = left_margin(y_tick_w);
    let top = 50.0;
    let plot_w = 560.0;
    let plot_h = legend_h.max(360.0);
    let f = Frame { left, right: left + plot_w, top, bottom: top + plot_h, x: x_axis, y: y_axis, y_down: false };
    let width = f.right + 20.0 + legend_w + 16.0;
    let height = f.bottom + 62.0;
    let mut svg = Svg::new(width, height);
    draw_axes(&mut svg, &f, true);

    // Reference lines under the data, labelled at the right end.
    for (k, (label, v)) in spec.hlines.iter().enumerate() {
        if !f.contains((f.x.min, *v)) {
            continue;
        }
        let y = f.sy(*v);
        svg.group_titled("", &format!("{label}: {}", fmt_compact(*v, 6)));
        svg.line(f.left, y, f.right, y, &hline_style(k));
        svg.text(
            f.right - 6.0,
            y - 4.0,
            POINT_FONT,
            "end",
            label,
            r##"fill="#444444" stroke="#ffffff" stroke-width="3" stroke-opacity="0.8" paint-order="stroke""##,
        );
        svg.end_group();
    }

    // Series: lines, then markers on top.
    for (k, s) in spec.series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        for run in clipped_runs(&f, &s.points) {
            let screen: Vec<(f64, f64)> = run.iter().map(|&(x, y)| (f.sx(x), f.sy(y))).collect();
            svg.polyline(
                &screen,
                &format!(
                    r#"fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round""#
                ),
            );
        }
    }
    for (k, s) in spec.series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let style = format!(r##"fill="{color}" stroke="#ffffff" stroke-width="1""##);
        for &(x, y) in s.points.iter().filter(|&&p| f.contains(p)) {
            let title = format!("{}: x = {}, y = {}", s.name, fmt_compact(x, 6), fmt_compact(y, 6));
            svg.circle_titled(f.sx(x), f.sy(y), 3.5, &style, &title);
        }
    }

    // Legend right of the plot.
    let lx = f.right + 20.0;
    let ly = f.top;
    svg.rect(lx, ly, legend_w, legend_h, r##"fill="#ffffff" stroke="#bbbbbb" stroke-width="1" rx="3""##);
    let row = |i: usize| ly + 4.0 + 20.0 * (i as f64 + 0.5);
    for (k, s) in spec.series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let cy = row(k);
        svg.line(lx + 10.0, cy, lx + 40.0, cy, &format!(r#"stroke="{color}" stroke-width="2""#));
        svg.circle(lx + 25.0, cy, 3.5, &format!(r##"fill="{color}" stroke="#ffffff" stroke-width="1""##));
        svg.text(lx + 48.0, cy + 4.0, legend_font, "start", &s.name, r##"fill="#222222""##);
    }
    for (k, (label, _)) in spec.hlines.iter().enumerate() {
        let cy = row(spec.series.len() + k);
        svg.line(lx + 10.0, cy, lx + 40.0, cy, &hline_style(k));
        svg.text(lx + 48.0, cy + 4.0, legend_font, "start", label, r##"fill="#222222""##);
    }

    svg.title(&spec.title);
    x_axis_label(&mut svg, &f, &spec.x_label, height - 18.0);
    y_axis_label(&mut svg, &f, &spec.y_label, f.left - 8.0 - y_tick_w - 12.0);
    Ok(svg.finish())
}

// ---------------------------------------------------------------------------
// PNG.

/// The system fonts, loaded once. When none of the families of
/// [`FONT_FAMILY`] is installed, the generic `sans-serif` is pointed at
/// whatever font there is.
fn fonts() -> Arc<fontdb::Database> {
    static FONTS: OnceLock<Arc<fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = fontdb::Database::new();
            db.load_system_fonts();
            let preferred = ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"];
            let has = |name: &str| db.faces().any(|f| f.families.iter().any(|(n, _)| n == name));
            let family = preferred
                .iter()
                .find(|n| has(n))
                .map(|s| s.to_string())
                .or_else(|| db.faces().next().and_then(|f| f.families.first().map(|(n, _)| n.clone())));
            if let Some(family) = family {
                db.set_sans_serif_family(family);
            }
            Arc::new(db)
        })
        .clone()
}

/// Renders an SVG document to PNG bytes, `scale` pixels per SVG unit.
///
/// Text uses the system fonts (loaded once per process); when no suitable
/// font is installed the text is left out rather than failing. The PNG is
/// `ceil(width × scale)` by `ceil(height × scale)` pixels.
///
/// Errors: [`Error::Invalid`] for a scale that is not a positive finite
/// number or a result larger than [`MAX_PNG_SIDE`] pixels a side,
/// [`Error::Svg`] when the SVG does not parse, [`Error::Render`] when
/// encoding fails.
pub fn svg_to_png(svg: &str, scale: f32) -> Result<Vec<u8>> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::Invalid(format!("PNG scale must be a positive number, not {scale}")));
    }
    let opt = usvg::Options { fontdb: fonts(), font_family: "sans-serif".to_string(), ..usvg::Options::default() };
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| Error::Svg(e.to_string()))?;
    let size = tree.size();
    let w = (f64::from(size.width()) * f64::from(scale)).ceil();
    let h = (f64::from(size.height()) * f64::from(scale)).ceil();
    let max = f64::from(MAX_PNG_SIDE);
    if !(w >= 1.0 && h >= 1.0 && w <= max && h <= max) {
        return Err(Error::Invalid(format!("PNG of {w}×{h} pixels is out of range (at most {MAX_PNG_SIDE} a side)")));
    }
    let mut pixmap = tiny_skia::Pixmap::new(w as u32, h as u32)
        .ok_or_else(|| Error::Render(format!("cannot allocate a {w}×{h} image")))?;
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| Error::Render(e.to_string()))
}

// ---------------------------------------------------------------------------
// From results.

/// Picks one metric of one subset of one dataset: `[DATASET:]METRIC[@SUBSET]`.
///
/// Examples: `top1` (the only dataset that has `top1`, subset `all`),
/// `real:top1`, `real:top1@labels=2`, `map-classes@group=dog`. Without a
/// dataset the selector matches when exactly one dataset has the metric;
/// the subset defaults to `all`. Whitespace around the parts is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// Dataset name; `None` picks the only dataset that has the metric.
    pub dataset: Option<String>,
    /// Metric name.
    pub metric: String,
    /// Subset name (`all` by default).
    pub subset: String,
}

impl Selector {
    /// Parses `[DATASET:]METRIC[@SUBSET]` (see [`Selector`]).
    ///
    /// The subset is what follows the first `@`; the dataset is what comes
    /// before the last `:` in front of it (metric names hold no `:`).
    pub fn parse(s: &str) -> Result<Selector> {
        let bad = |reason: &str| Error::Selector { selector: s.to_string(), reason: reason.to_string() };
        let (head, subset) = match s.split_once('@') {
            Some((h, sub)) => {
                let sub = sub.trim();
                if sub.is_empty() {
                    return Err(bad("empty subset after '@' (expected [DATASET:]METRIC[@SUBSET])"));
                }
                (h, sub.to_string())
            }
            None => (s, "all".to_string()),
        };
        let (dataset, metric) = match head.rsplit_once(':') {
            Some((d, m)) => {
                let d = d.trim();
                if d.is_empty() {
                    return Err(bad("empty dataset before ':' (expected [DATASET:]METRIC[@SUBSET])"));
                }
                (Some(d.to_string()), m.trim())
            }
            None => (None, head.trim()),
        };
        if metric.is_empty() {
            return Err(bad("no metric (expected [DATASET:]METRIC[@SUBSET])"));
        }
        Ok(Selector { dataset, metric: metric.to_string(), subset })
    }

    /// A readable description such as `real top1` or `real top1, labels=2`,
    /// with `dataset` standing in for a missing dataset name.
    fn describe(&self, dataset: &str) -> String {
        if self.subset == "all" {
            format!("{dataset} {}", self.metric)
        } else {
            format!("{dataset} {}, {}", self.metric, self.subset)
        }
    }
}

impl FromStr for Selector {
    type Err = Error;
    fn from_str(s: &str) -> Result<Selector> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.dataset {
            write!(f, "{d}:")?;
        }
        write!(f, "{}", self.metric)?;
        if self.subset != "all" {
            write!(f, "@{}", self.subset)?;
        }
        Ok(())
    }
}

/// The dataset the rows matching `pick` belong to: `given` if set (and
/// present), else the only one.
fn resolve_dataset(
    results: &ResultSet,
    given: Option<&str>,
    what: &str,
    pick: impl Fn(&ResultRow) -> bool,
) -> Result<String> {
    let mut found: Vec<&str> = Vec::new();
    for r in results.rows.iter().filter(|r| pick(r)) {
        if !found.contains(&r.dataset.as_str()) {
            found.push(&r.dataset);
        }
    }
    let err = |reason: String| Error::Selector { selector: what.to_string(), reason };
    match given {
        Some(d) if found.contains(&d) => Ok(d.to_string()),
        Some(_) if found.is_empty() => Err(Error::Empty(format!("no result rows for {what}"))),
        Some(d) => Err(err(format!("dataset {d:?} has no such rows; datasets that have them: {}", found.join(", ")))),
        None => match found.as_slice() {
            [] => Err(Error::Empty(format!("no result rows for {what}"))),
            [one] => Ok(one.to_string()),
            many => Err(err(format!("several datasets have it ({}); write DATASET:METRIC", many.join(", ")))),
        },
    }
}

/// Scale factor (100 for rates) and the axis-label suffix.
fn percent(results: &ResultSet, metric: &str) -> (f64, &'static str) {
    if is_rate(results, metric) {
        (100.0, " (%)")
    } else {
        (1.0, "")
    }
}

/// Builds a scatter plot with one point per model that has both the `x` and
/// the `y` value (models in first-seen order).
///
/// Rates are given in percent; intervals are carried over. The axis labels
/// describe the selectors (`real top1 (%)`), the title is `Y vs X`.
///
/// Errors: [`Error::Selector`] when a selector without dataset matches
/// several datasets, or names a dataset that lacks the metric;
/// [`Error::Empty`] when no row matches or no model has both values.
pub fn scatter_from_results(
    results: &ResultSet,
    x: &Selector,
    y: &Selector,
    diagonal: bool,
    fit: bool,
) -> Result<ScatterSpec> {
    let dx = resolve_dataset(results, x.dataset.as_deref(), &x.to_string(), |r| {
        r.metric == x.metric && r.subset == x.subset
    })?;
    let dy = resolve_dataset(results, y.dataset.as_deref(), &y.to_string(), |r| {
        r.metric == y.metric && r.subset == y.subset
    })?;
    let (kx, ux) = percent(results, &x.metric);
    let (ky, uy) = percent(results, &y.metric);
    let ci = |r: &ResultRow, k: f64| match (r.ci_low, r.ci_high) {
        (Some(lo), Some(hi)) => Some((lo * k, hi * k)),
        _ => None,
    };
    let mut points = Vec::new();
    for m in results.models() {
        let (Some(rx), Some(ry)) =
            (results.find(m, &dx, &x.metric, &x.subset), results.find(m, &dy, &y.metric, &y.subset))
        else {
            continue;
        };
        points.push(Point {
            label: m.to_string(),
            x: rx.value * kx,
            y: ry.value * ky,
            x_ci: ci(rx, kx),
            y_ci: ci(ry, ky),
        });
    }
    if points.is_empty() {
        return Err(Error::Empty(format!("no model has both {x} and {y}")));
    }
    let (x_desc, y_desc) = (x.describe(&dx), y.describe(&dy));
    Ok(ScatterSpec {
        title: format!("{y_desc} vs {x_desc}"),
        x_label: format!("{x_desc}{ux}"),
        y_label: format!("{y_desc}{uy}"),
        points,
        diagonal,
        fit,
    })
}

/// Whether `subset` is one of the buckets named by `prefix`: `labels`
/// matches `labels=2` and `labels>=4`, `group` matches `group=dog`; a
/// prefix ending in `=`, `<` or `>` matches by plain prefix.
fn in_buckets(subset: &str, prefix: &str) -> bool {
    if subset == "all" {
        return false;
    }
    if prefix.is_empty() {
        return true;
    }
    match subset.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with(['=', '<', '>']) || rest.starts_with(['=', '<', '>', '!']),
        None => false,
    }
}

/// Builds a grouped bar chart of `metric` over the subsets named by
/// `subset_prefix` (`labels` gives the categories `labels=1`, `labels=2`,
/// ... in first-seen order), one series per model (first-seen order).
///
/// Rates are given in percent; intervals are carried over. Without
/// `dataset` the only dataset with such rows is used.
///
/// Errors: [`Error::Selector`] when several datasets qualify or the given
/// one has no such rows; [`Error::Empty`] when no row matches.
pub fn buckets_from_results(
    results: &ResultSet,
    dataset: Option<&str>,
    metric: &str,
    subset_prefix: &str,
) -> Result<BarSpec> {
    let what = format!("{metric} by {subset_prefix}");
    let d = resolve_dataset(results, dataset, &what, |r| r.metric == metric && in_buckets(&r.subset, subset_prefix))?;
    let rows: Vec<&ResultRow> = results
        .rows
        .iter()
        .filter(|r| r.dataset == d && r.metric == metric && in_buckets(&r.subset, subset_prefix))
        .collect();
    let mut categories: Vec<String> = Vec::new();
    let mut models: Vec<&str> = Vec::new();
    for r in &rows {
        if !categories.contains(&r.subset) {
            categories.push(r.subset.clone());
        }
        if !models.contains(&r.model.as_str()) {
            models.push(&r.model);
        }
    }
    let (k, unit) = percent(results, metric);
    let series = models
        .iter()
        .map(|m| {
            let found: Vec<Option<&ResultRow>> =
                categories.iter().map(|c| rows.iter().find(|r| r.model == *m && r.subset == *c).copied()).collect();
            BarSeries {
                name: m.to_string(),
                values: found.iter().map(|r| r.map(|r| r.value * k)).collect(),
                ci: found
                    .iter()
                    .map(|r| match r.map(|r| (r.ci_low, r.ci_high)) {
                        Some((Some(lo), Some(hi))) => Some((lo * k, hi * k)),
                        _ => None,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(BarSpec {
        title: format!("{metric} by {subset_prefix} ({d})"),
        y_label: format!("{metric}{unit}"),
        categories,
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axes() {
        assert_eq!(fmt_sig(11.68123, 4), "11.68");
        assert_eq!(fmt_sig(0.0034171, 4), "0.003417");
        assert_eq!(fmt_sig(-0.92211, 3), "-0.922");
        assert_eq!(fmt_sig(12345.6, 3), "12346");
        let a = Axis::covering(71.3, 88.9, 6);
        assert_eq!((a.min, a.max, a.step), (70.0, 90.0, 5.0));
        assert_eq!(a.ticks(), [70.0, 75.0, 80.0, 85.0, 90.0]);
        assert_eq!(a.label(75.0), "75");
        let b = Axis::covering(0.0, 0.93, 5);
        assert_eq!(b.label(b.ticks()[1]), "0.2");
        let c = Axis::covering(-0.3, 0.3, 6);
        assert!(c.ticks().iter().any(|&t| c.label(t) == "0.0"), "{:?}", c.ticks());
        // A single value still gives an axis of positive length.
        let d = Axis::covering(50.0, 50.0, 6);
        assert!(d.min < 50.0 && d.max > 50.0);
    }

    #[test]
    fn clipping() {
        let seg = clip_segment((-1.0, -1.0), (2.0, 2.0), 0.0, 1.0, 0.0, 1.0).unwrap();
        assert_eq!(seg, ((0.0, 0.0), (1.0, 1.0)));
        assert!(clip_segment((0.0, 5.0), (1.0, 6.0), 0.0, 1.0, 0.0, 1.0).is_none());
        let seg = clip_segment((0.0, 0.5), (1.0, 0.5), 0.0, 1.0, 0.0, 1.0).unwrap();
        assert_eq!(seg, ((0.0, 0.5), (1.0, 0.5)));
    }

    /// The start tags `<name ...>` in `svg`, each up to its `>`.
    fn tags<'a>(svg: &'a str, name: &str) -> Vec<&'a str> {
        let open = format!("<{name} ");
        svg.match_indices(&open).map(|(i, _)| &svg[i..i + svg[i..].find('>').unwrap() + 1]).collect()
    }

    /// The value of attribute `key` of a start tag.
    fn attr<'a>(tag: &'a str, key: &str) -> &'a str {
        let pat = format!(" {key}=\"");
        let i = tag.find(&pat).unwrap_or_else(|| panic!("no {key} in {tag}")) + pat.len();
        &tag[i..i + tag[i..].find('"').unwrap()]
    }

    fn num(tag: &str, key: &str) -> f64 {
        attr(tag, key).parse().unwrap()
    }

    /// The lines of `svg` holding an element of kind `name` with a tooltip
    /// that contains `title`.
    fn titled<'a>(svg: &'a str, name: &str, title: &str) -> Vec<&'a str> {
        let open = format!("<{name} ");
        svg.lines().filter(|l| l.starts_with(&open) && l.contains("<title>") && l.contains(title)).collect()
    }

    fn renders(svg: &str) {
        let png = svg_to_png(svg, 1.0).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(!svg.contains(" id="), "no ids");
    }

    fn heatmap_example(y_down: bool) -> HeatmapSpec {
        HeatmapSpec {
            title: "centers <&>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_range: (-0.5, 2.5),
            y_range: (0.0, 2.0),
            cols: 3,
            rows: 2,
            values: vec![0.0, 1.0, 2.0, 3.0, 4.0, 8.0],
            y_down,
            outline: Some([0.0, 0.0, 1.0, 1.0]),
            marker: Some((1.5, 1.0)),
        }
    }

    #[test]
    fn exact_axis_ticks_stay_inside() {
        let a = Axis::exact(-0.5, 2.5, 6);
        let t = a.ticks();
        assert_eq!(a.step, 0.5);
        assert_eq!(t.first(), Some(&-0.5));
        assert_eq!(t.last(), Some(&2.5));
        let b = Axis::exact(0.03, 0.97, 5);
        let t = b.ticks();
        assert!(t.iter().all(|&v| (0.03..=0.97).contains(&v)), "{t:?}");
        assert_eq!(b.label(t[0]), "0.2");
        let c = Axis::exact(-0.25, 1.25, 6);
        assert_eq!(c.step, 0.2);
        assert_eq!(c.ticks().len(), 8, "{:?}", c.ticks());
    }

    #[test]
    fn heat_scale_interpolates_between_stops() {
        assert_eq!(heat_color(0.0), "#ffffd9");
        assert_eq!(heat_color(1.0), "#081d58");
        assert_eq!(heat_color(0.5), "#41b6c4");
        // Half-way between the first two stops.
        assert_eq!(heat_color(0.125), "#e3f4c7");
        // Darker as the value grows (sum of the channels falls).
        let dark = |c: &str| (1..7).step_by(2).map(|i| u32::from_str_radix(&c[i..i + 2], 16).unwrap()).sum::<u32>();
        let sums: Vec<u32> = (0..=20).map(|k| dark(&heat_color(k as f64 / 20.0))).collect();
        assert!(sums.windows(2).all(|w| w[1] < w[0]), "{sums:?}");
        assert_eq!(fmt_compact(8.0, 4), "8");
        assert_eq!(fmt_compact(0.25, 4), "0.25");
    }

    #[test]
    fn heatmap_colors_cells_and_orients_rows() {
        for y_down in [false, true] {
            let svg = heatmap_svg(&heatmap_example(y_down)).unwrap();
            renders(&svg);
            let cells: Vec<&str> = svg.lines().filter(|l| l.starts_with("<rect ") && l.contains("<title>")).collect();
            assert_eq!(cells.len(), 6);
            let max = titled(&svg, "rect", "): 8</title>");
            assert_eq!(max.len(), 1);
            assert_eq!(attr(max[0], "fill"), "#081d58", "largest value gets the darkest stop");
            let zero = titled(&svg, "rect", "): 0</title>");
            assert_eq!(zero.len(), 1);
            assert_eq!(attr(zero[0], "fill"), "#ffffd9", "zero gets the lightest stop");
            let half = titled(&svg, "rect", "): 4</title>");
            assert_eq!(attr(half[0], "fill"), "#41b6c4");
            // Row 0 is y in [0, 1), row 1 is y in [1, 2).
            let row0 = num(titled(&svg, "rect", "y [0, 1)")[0], "y");
            let row1 = num(titled(&svg, "rect", "y [1, 2)")[0], "y");
            if y_down {
                assert!(row0 < row1, "y_down: row 0 above row 1 ({row0} vs {row1})");
            } else {
                assert!(row0 > row1, "y up: row 0 below row 1 ({row0} vs {row1})");
            }
            // Columns left to right.
            let c0 = num(titled(&svg, "rect", "x [-0.5, 0.5)")[0], "x");
            let c2 = num(titled(&svg, "rect", "x [1.5, 2.5)")[0], "x");
            assert!(c0 < c2);
            assert!(svg.contains("centers &lt;&amp;&gt;"), "title escaped");
            assert!(svg.contains("<title>marker (1.5, 1)</title>"));
            assert!(svg.contains("<title>outline [0, 1] × [0, 1]</title>"));
            assert!(svg.contains("stroke-dasharray=\"6 4\""));
            // The color bar is labelled with 0 and the largest value.
            assert!(svg.contains(">8</text>") && svg.contains(">0</text>"));
        }
    }

    #[test]
    fn heatmap_errors_and_zeros() {
        let ok = heatmap_example(false);
        let bad = |edit: &dyn Fn(&mut HeatmapSpec)| {
            let mut s = ok.clone();
            edit(&mut s);
            heatmap_svg(&s)
        };
        assert!(matches!(bad(&|s| s.values.pop().map(drop).unwrap()), Err(Error::Invalid(_))));
        assert!(matches!(bad(&|s| s.cols = 2), Err(Error::Invalid(_))));
        assert!(matches!(
            bad(&|s| {
                s.rows = 0;
                s.values.clear();
            }),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(bad(&|s| s.values[3] = -1.0), Err(Error::Invalid(_))));
        assert!(matches!(bad(&|s| s.values[3] = f64::NAN), Err(Error::NonFinite(_))));
        assert!(matches!(bad(&|s| s.values[0] = f64::INFINITY), Err(Error::NonFinite(_))));
        assert!(matches!(bad(&|s| s.x_range = (1.0, 1.0)), Err(Error::Invalid(_))));
        assert!(matches!(bad(&|s| s.y_range = (2.0, 0.0)), Err(Error::Invalid(_))));
        assert!(matches!(bad(&|s| s.y_range = (0.0, f64::INFINITY)), Err(Error::NonFinite(_))));
        assert!(matches!(bad(&|s| s.marker = Some((f64::NAN, 0.0))), Err(Error::NonFinite(_))));
        assert!(matches!(bad(&|s| s.outline = Some([0.0, 0.0, f64::NAN, 1.0])), Err(Error::NonFinite(_))));

        // All zeros: drawn, every cell the lightest color.
        let mut zeros = ok.clone();
        zeros.values = vec![0.0; 6];
        zeros.marker = Some((10.0, 10.0)); // outside: left out
        let svg = heatmap_svg(&zeros).unwrap();
        renders(&svg);
        let cells: Vec<&str> = svg.lines().filter(|l| l.starts_with("<rect ") && l.contains("<title>")).collect();
        assert_eq!(cells.len(), 6);
        assert!(cells.iter().all(|c| attr(c, "fill") == "#ffffd9"));
        assert!(!svg.contains("marker ("));
    }

    fn lines_example() -> LineSpec {
        LineSpec {
            title: "agreement by threshold".into(),
            x_label: "threshold".into(),
            y_label: "agreement (%)".into(),
            series: vec![
                LineSeries { name: "a".into(), points: vec![(0.1, 60.0), (0.3, 70.0), (0.5, 72.5), (0.9, 90.0)] },
                LineSeries { name: "b <x>".into(), points: vec![(0.1, 40.0), (0.5, 55.0), (0.9, 50.0)] },
                LineSeries { name: "c".into(), points: vec![(0.2, 30.0), (0.4, 35.0)] },
            ],
            hlines: vec![("chance".into(), 50.0), ("human".into(), 95.0)],
            y_range: None,
        }
    }

    #[test]
    fn lines_draws_series_markers_and_reference_lines() {
        let spec = lines_example();
        let svg = lines_svg(&spec).unwrap();
        renders(&svg);
        assert_eq!(tags(&svg, "polyline").len(), spec.series.len());
        // Markers of series a: in point order, x grows and so does pixel x;
        // larger y is higher up (smaller pixel y).
        let a = titled(&svg, "circle", "<title>a: ");
        assert_eq!(a.len(), 4);
        let cx: Vec<f64> = a.iter().map(|t| num(t, "cx")).collect();
        let cy: Vec<f64> = a.iter().map(|t| num(t, "cy")).collect();
        assert!(cx.windows(2).all(|w| w[1] > w[0]), "{cx:?}");
        assert!(cy.windows(2).all(|w| w[1] < w[0]), "{cy:?}");
        assert!(svg.contains("<title>a: x = 0.5, y = 72.5</title>"));
        assert!(svg.contains("b &lt;x&gt;"), "series name escaped");
        // Reference lines, dashed, also in the legend; the y axis covers the
        // highest one.
        assert!(svg.contains("<title>chance: 50</title>") && svg.contains("<title>human: 95</title>"));
        assert!(svg.matches("stroke-dasharray=\"7 5\"").count() >= 2, "chance line and its legend entry");
        assert!(svg.contains(">human</text>"));
        // "chance" (50) at the lowest point: the axis goes below it,
        // so that the frame does not hide the line.
        let mut low = spec.clone();
        low.series[2].points.clear();
        low.series[1].points[0].1 = 50.0;
        let low_svg = lines_svg(&low).unwrap();
        let chance = low_svg.lines().skip_while(|l| !l.contains("<title>chance: 50</title>")).nth(1).unwrap();
        let bottom = 50.0 + 360.0;
        assert!(num(chance, "y1") < bottom - 1.0, "{chance}");
        let polyline_colors: Vec<&str> = tags(&svg, "polyline").iter().map(|t| attr(t, "stroke")).collect();
        assert_eq!(polyline_colors, &PALETTE[..3]);
    }

    #[test]
    fn lines_fixed_range_clips() {
        let mut spec = lines_example();
        spec.y_range = Some((45.0, 80.0));
        spec.hlines.truncate(1);
        let svg = lines_svg(&spec).unwrap();
        renders(&svg);
        // a: 60, 70, 72.5 inside, 90 outside; b: 55, 50 inside, 40 out; c out.
        assert_eq!(titled(&svg, "circle", "<title>a: ").len(), 3);
        assert_eq!(titled(&svg, "circle", "<title>b &lt;x&gt;: ").len(), 2);
        assert_eq!(titled(&svg, "circle", "<title>c: ").len(), 0);
        // Series c lies wholly below the axis: a and b keep one polyline each.
        assert_eq!(tags(&svg, "polyline").len(), 2);
        // Every polyline vertex lies inside the plot area (y 45..80).
        let f_top = 50.0;
        let f_bottom = f_top + 360.0;
        for t in tags(&svg, "polyline") {
            for p in attr(t, "points").split(' ') {
                let y: f64 = p.split(',').nth(1).unwrap().parse().unwrap();
                assert!((f_top - 0.01..=f_bottom + 0.01).contains(&y), "{y} outside in {t}");
            }
        }
    }

    #[test]
    fn lines_errors() {
        let mut s = lines_example();
        s.series.clear();
        assert!(matches!(lines_svg(&s), Err(Error::Empty(_))));
        let mut s = lines_example();
        s.series.iter_mut().for_each(|s| s.points.clear());
        assert!(matches!(lines_svg(&s), Err(Error::Empty(_))));
        let mut s = lines_example();
        s.series[1].points[0].1 = f64::NAN;
        assert!(matches!(lines_svg(&s), Err(Error::NonFinite(_))));
        let mut s = lines_example();
        s.series[2].points[1].0 = f64::INFINITY;
        assert!(matches!(lines_svg(&s), Err(Error::NonFinite(_))));
        let mut s = lines_example();
        s.hlines[0].1 = f64::NAN;
        assert!(matches!(lines_svg(&s), Err(Error::NonFinite(_))));
        let mut s = lines_example();
        s.y_range = Some((1.0, 0.0));
        assert!(matches!(lines_svg(&s), Err(Error::Invalid(_))));
        // One series of one point: only its marker.
        let one = LineSpec {
            title: "one".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![LineSeries { name: "solo".into(), points: vec![(3.0, 3.0)] }],
            hlines: vec![],
            y_range: None,
        };
        let svg = lines_svg(&one).unwrap();
        renders(&svg);
        assert_eq!(tags(&svg, "polyline").len(), 0);
        assert_eq!(titled(&svg, "circle", "<title>solo: ").len(), 1);
    }

    #[test]
    fn bucket_prefixes() {
        assert!(in_buckets("labels=2", "labels"));
        assert!(in_buckets("labels>=4", "labels"));
        assert!(!in_buckets("labelsx", "labels"));
        assert!(in_buckets("group=dog", "group="));
        assert!(!in_buckets("all", ""));
    }
}
