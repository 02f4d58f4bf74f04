//! Chart drawing with plotters: x/y line charts (linear, logarithmic or "nines" axes) with
//! markers, shaded spans and reference lines, and horizontal grouped bar charts.
//!
//! Every chart is written twice, as PNG and SVG, from the same drawing code. PNG text is
//! rasterised with an embedded font (DejaVu Sans through plotters' `ab_glyph` feature), so
//! charts render the same on a machine with no fonts and no fontconfig.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::ReportError;

type DrawResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

static FONT: &[u8] = include_bytes!("font/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse; a failure would be a build defect.
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            tracing::error!("embedded chart font did not parse; PNG text will be missing");
        }
    });
}

/// Distinct colours (Tableau 10), in series order.
pub const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// A linear axis range with tick positions chosen by us (plotters' own would put ticks
/// at round numbers of the *transformed* value on log and nines axes).
#[derive(Debug, Clone)]
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;
    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        if self.hi == self.lo {
            return (limit.0 + limit.1) / 2;
        }
        let f = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (f * f64::from(limit.1 - limit.0)).round() as i32
    }
    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }
    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

fn ticked(lo: f64, hi: f64, ticks: Vec<f64>) -> Ticked {
    Ticked { lo, hi, ticks }
}

/// How an axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Base-10 logarithmic (values must be > 0; others are dropped).
    Log,
    /// Percentiles on a "nines" axis: the value is a quantile q in [0, 1), placed at
    /// -log10(1 - q), so 90 %, 99 %, 99.9 % are equally spaced.
    Nines,
}

impl Scale {
    fn to_axis(self, v: f64) -> Option<f64> {
        match self {
            Scale::Linear => v.is_finite().then_some(v),
            Scale::Log => (v > 0.0 && v.is_finite()).then(|| v.log10()),
            Scale::Nines => (0.0..1.0).contains(&v).then(|| -(1.0 - v).log10()),
        }
    }

    fn label(self, a: f64) -> String {
        match self {
            Scale::Linear => fmt_num(a),
            Scale::Log => fmt_num(10f64.powf(a)),
            Scale::Nines => {
                let pct = 100.0 * (1.0 - 10f64.powf(-a));
                let s = format!("{pct:.4}");
                let s = s.trim_end_matches('0').trim_end_matches('.');
                format!("{s}%")
            }
        }
    }

    /// Tick positions (in axis units) for an axis range.
    fn ticks(self, lo: f64, hi: f64) -> Vec<f64> {
        match self {
            Scale::Linear => nice_ticks(lo, hi),
            Scale::Nines => {
                let mut t = vec![2f64.log10()];
                t.extend((1..=hi.floor() as i32).map(f64::from));
                t.retain(|v| *v >= lo - 1e-9 && *v <= hi + 1e-9);
                t
            }
            Scale::Log => {
                let decades = hi - lo;
                let mults: &[f64] = if decades <= 1.5 {
                    &[1.0, 1.5, 2.0, 3.0, 5.0, 7.0]
                } else if decades <= 4.0 {
                    &[1.0, 2.0, 5.0]
                } else {
                    &[1.0]
                };
                let mut t = Vec::new();
                for d in (lo.floor() as i32)..=(hi.ceil() as i32) {
                    for m in mults {
                        let v = f64::from(d) + m.log10();
                        if v >= lo - 1e-9 && v <= hi + 1e-9 {
                            t.push(v);
                        }
                    }
                }
                t
            }
        }
    }
}

/// A short human number: 1.5k, 20M, 0.25, 12.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    let (x, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = if x.abs() >= 100.0 || x == x.round() {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else if x.abs() >= 0.1 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{suffix}")
}

fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 8.0)
        .unwrap_or(10.0 * mag);
    let mut t = Vec::new();
    let mut v = (lo / step).ceil() * step;
    while v <= hi + step * 1e-9 {
        t.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    t
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Line,
    Dashed,
    /// Markers only.
    Points,
    /// Line with markers at the points.
    LinePoints,
}

/// One line of an [`XyPanel`].
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub color: RGBColor,
    pub style: Style,
    /// (x, y) in data units; points the scales cannot show are dropped.
    pub points: Vec<(f64, f64)>,
}

/// One plot area: axes, series and annotations.
#[derive(Debug, Clone)]
pub struct XyPanel {
    pub x_desc: String,
    pub y_desc: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    pub series: Vec<Series>,
    /// Horizontal reference lines (y, label), e.g. an SLO.
    pub hlines: Vec<(f64, String)>,
    /// Vertical event markers (x, label).
    pub markers: Vec<(f64, String)>,
    /// Shaded x ranges, e.g. recovery windows.
    pub spans: Vec<(f64, f64)>,
    /// Force the x range (data units) instead of fitting the data.
    pub x_range: Option<(f64, f64)>,
    /// Include zero in a linear y range.
    pub y_from_zero: bool,
}

impl XyPanel {
    pub fn new(x_desc: &str, x_scale: Scale, y_desc: &str, y_scale: Scale) -> XyPanel {
        XyPanel {
            x_desc: x_desc.into(),
            y_desc: y_desc.into(),
            x_scale,
            y_scale,
            series: Vec::new(),
            hlines: Vec::new(),
            markers: Vec::new(),
            spans: Vec::new(),
            x_range: None,
            y_from_zero: y_scale == Scale::Linear,
        }
    }

    fn axis_points(&self) -> Vec<Vec<(f64, f64)>> {
        self.series
            .iter()
            .map(|s| {
                s.points
                    .iter()
                    .filter_map(|&(x, y)| {
                        Some((self.x_scale.to_axis(x)?, self.y_scale.to_axis(y)?))
                    })
                    .collect()
            })
            .collect()
    }

    fn ranges(&self, pts: &[Vec<(f64, f64)>]) -> ((f64, f64), (f64, f64)) {
        let all = pts.iter().flatten();
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in all {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        for (y, _) in &self.hlines {
            if let Some(a) = self.y_scale.to_axis(*y) {
                y0 = y0.min(a);
                y1 = y1.max(a);
            }
        }
        for &(x, _) in &self.markers {
            if let Some(a) = self.x_scale.to_axis(x) {
                x0 = x0.min(a);
                x1 = x1.max(a);
            }
        }
        if let Some((a, b)) = self.x_range
            && let (Some(a), Some(b)) = (self.x_scale.to_axis(a), self.x_scale.to_axis(b))
        {
            (x0, x1) = (a, b);
        }
        if x0 > x1 {
            (x0, x1) = (0.0, 1.0);
        }
        if y0 > y1 {
            (y0, y1) = (0.0, 1.0);
        }
        if self.y_from_zero && self.y_scale == Scale::Linear {
            y0 = y0.min(0.0);
        }
        let pad = |lo: f64, hi: f64, scale: Scale, frac: f64| {
            if (hi - lo).abs() < 1e-12 {
                if lo == 0.0 && scale == Scale::Linear {
                    // All zero (no apply lag, no errors): 0 at the bottom, not mid-axis
                    // between made-up negative and fractional ticks.
                    return (0.0, 1.0);
                }
                let d = if scale == Scale::Linear {
                    lo.abs().max(1.0) * 0.1
                } else {
                    0.3
                };
                (lo - d, hi + d)
            } else {
                let d = (hi - lo) * frac;
                (if lo == 0.0 { lo } else { lo - d }, hi + d)
            }
        };
        let x = if self.x_scale == Scale::Nines {
            (0.0, x1.max(2.0).ceil())
        } else {
            pad(x0, x1, self.x_scale, 0.02)
        };
        let (y0, mut y1) = pad(y0, y1, self.y_scale, 0.08);
        // Head room for the legend box, which sits in the upper left.
        let legend_lines = self.series.iter().filter(|s| !s.label.is_empty()).count();
        if legend_lines > 0 {
            y1 += (y1 - y0) * (0.06 * legend_lines.min(8) as f64);
        }
        (x, (y0, y1))
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        caption: Option<&str>,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let pts = self.axis_points();
        let ((x0, x1), (y0, y1)) = self.ranges(&pts);
        let (xs, ys) = (self.x_scale, self.y_scale);
        let mut builder = ChartBuilder::on(area);
        if let Some(c) = caption {
            builder.caption(c, (FAMILY, 20));
        }
        let mut chart = builder
            .margin(12)
            .margin_right(36)
            .x_label_area_size(42)
            .y_label_area_size(72)
            .build_cartesian_2d(
                ticked(x0, x1, xs.ticks(x0, x1)),
                ticked(y0, y1, ys.ticks(y0, y1)),
            )?;
        let xf = move |v: &f64| xs.label(*v);
        let yf = move |v: &f64| ys.label(*v);
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .x_label_formatter(&xf)
            .y_label_formatter(&yf)
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;
        for &(a, b) in &self.spans {
            if let (Some(a), Some(b)) = (xs.to_axis(a), xs.to_axis(b)) {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(a.max(x0), y0), (b.min(x1), y1)],
                    RGBColor(255, 200, 0).mix(0.18).filled(),
                )))?;
            }
        }
        for (i, (x, label)) in self.markers.iter().enumerate() {
            let Some(a) = xs.to_axis(*x) else { continue };
            chart.draw_series(DashedLineSeries::new(
                [(a, y0), (a, y1)],
                6,
                4,
                BLACK.mix(0.6).stroke_width(1),
            ))?;
            // Stagger labels so neighbouring events stay readable.
            let frac = 0.97 - 0.07 * (i % 4) as f64;
            chart.draw_series(std::iter::once(Text::new(
                format!(" {label}"),
                (a, y0 + (y1 - y0) * frac),
                (FAMILY, 12).into_font().color(&BLACK),
            )))?;
        }
        for (y, label) in &self.hlines {
            let Some(a) = ys.to_axis(*y) else { continue };
            chart.draw_series(DashedLineSeries::new(
                [(x0, a), (x1, a)],
                8,
                5,
                RED.stroke_width(2),
            ))?;
            chart.draw_series(std::iter::once(Text::new(
                label.clone(),
                (x0 + (x1 - x0) * 0.55, a + (y1 - y0) * 0.06),
                (FAMILY, 12).into_font().color(&RED),
            )))?;
        }
        let mut labelled = false;
        for (s, p) in self.series.iter().zip(&pts) {
            let c = s.color;
            let style = c.stroke_width(2);
            let anno = match s.style {
                Style::Line => chart.draw_series(LineSeries::new(p.clone(), style))?,
                Style::Dashed => {
                    chart.draw_series(DashedLineSeries::new(p.clone(), 7, 4, style))?
                }
                Style::Points => {
                    chart.draw_series(p.iter().map(|&q| Circle::new(q, 4, c.filled())))?
                }
                Style::LinePoints => {
                    chart.draw_series(p.iter().map(|&q| Circle::new(q, 3, c.filled())))?;
                    chart.draw_series(LineSeries::new(p.clone(), style))?
                }
            };
            if !s.label.is_empty() {
                labelled = true;
                let dashed = s.style == Style::Dashed;
                let points = s.style == Style::Points;
                anno.label(s.label.clone()).legend(move |(x, y)| {
                    let e: DynElement<'static, _, _> = if points {
                        Circle::new((x + 10, y), 4, c.filled()).into_dyn()
                    } else if dashed {
                        PathElement::new(vec![(x, y), (x + 7, y)], c.stroke_width(2)).into_dyn()
                    } else {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)).into_dyn()
                    };
                    e
                });
            }
        }
        if labelled {
            legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        }
        Ok(())
    }
}

/// The legend box, in one style for every chart.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<Ticked, Ticked>>,
    position: SeriesLabelPosition,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FAMILY, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

/// A chart of one or more panels stacked vertically, with a title.
#[derive(Debug, Clone)]
pub struct XyChart {
    pub title: String,
    pub panels: Vec<XyPanel>,
    pub size: (u32, u32),
}

/// A bar's value and, for repeated runs, its (min, max).
pub type Bar = (f64, Option<(f64, f64)>);

/// Bar series: (label, one optional bar per category).
pub type BarSeries = Vec<(String, Vec<Option<Bar>>)>;

/// A horizontal grouped bar chart: one group per category, one bar per series, with
/// optional min–max whiskers (repeated runs).
#[derive(Debug, Clone)]
pub struct BarChart {
    pub title: String,
    pub x_desc: String,
    pub categories: Vec<String>,
    /// (label, values per category: (value, optional (min, max))).
    pub series: BarSeries,
}

/// A chart that can draw itself on any plotters backend.
pub trait Chart {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static;
}

impl Chart for XyChart {
    fn size(&self) -> (u32, u32) {
        self.size
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let root = root.titled(&self.title, (FAMILY, 20))?;
        let areas = root.split_evenly((self.panels.len().max(1), 1));
        for (p, a) in self.panels.iter().zip(&areas) {
            p.draw(a, None)?;
        }
        Ok(())
    }
}

impl Chart for BarChart {
    fn size(&self) -> (u32, u32) {
        let bars = self.categories.len() * self.series.len().max(1);
        (
            1000,
            (140 + 22 * bars as u32 + 10 * self.categories.len() as u32).max(260),
        )
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let n = self.categories.len().max(1);
        let k = self.series.len().max(1);
        let mut hi = 0f64;
        for (_, vals) in &self.series {
            for (v, mm) in vals.iter().flatten() {
                hi = hi.max(*v).max(mm.map_or(0.0, |m| m.1));
            }
        }
        // Room on the right for value labels and the legend box (lower right).
        let hi = if hi > 0.0 { hi * 1.3 } else { 1.0 };
        let label_px = self
            .categories
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(4) as u32
            * 8
            + 16;
        let cats = self.categories.clone();
        let ylabel = move |v: &f64| {
            let i = (n as f64 - 1.0 - *v).round();
            if (n as f64 - 1.0 - *v - i).abs() < 1e-6 && i >= 0.0 {
                cats.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(label_px.min(420))
            .build_cartesian_2d(
                ticked(0.0, hi, nice_ticks(0.0, hi)),
                ticked(-0.5, n as f64 - 0.5, (0..n).map(|i| i as f64).collect()),
            )?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .x_label_formatter(&|v| fmt_num(*v))
            .y_label_formatter(&ylabel)
            .disable_y_mesh()
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;
        let band = 0.8 / k as f64;
        for (si, (label, vals)) in self.series.iter().enumerate() {
            let c = color(si);
            let mut rects = Vec::new();
            let mut texts = Vec::new();
            let mut whiskers = Vec::new();
            for (ci, v) in vals.iter().enumerate() {
                let Some((v, mm)) = v else { continue };
                let center = (n - 1 - ci) as f64;
                let top = center + 0.4 - band * si as f64;
                let bottom = top - band * 0.9;
                rects.push(Rectangle::new([(0.0, bottom), (*v, top)], c.filled()));
                texts.push(Text::new(
                    format!(" {}", fmt_num(*v)),
                    (
                        mm.map_or(*v, |m| m.1.max(*v)),
                        (top + bottom) / 2.0 + band * 0.25,
                    ),
                    (FAMILY, 12).into_font().color(&BLACK),
                ));
                if let Some((lo, up)) = mm {
                    let y = (top + bottom) / 2.0;
                    whiskers.push(PathElement::new(
                        vec![(*lo, y), (*up, y)],
                        BLACK.stroke_width(1),
                    ));
                }
            }
            chart
                .draw_series(rects)?
                .label(label.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
            chart.draw_series(whiskers)?;
            chart.draw_series(texts)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        Ok(())
    }
}

/// Either kind of chart.
#[derive(Debug, Clone)]
pub enum AnyChart {
    Xy(XyChart),
    Bar(BarChart),
}

/// A chart written to disk.
#[derive(Debug, Clone)]
pub struct ChartFile {
    /// File stem, e.g. `spectrum`.
    pub name: String,
    /// What the chart shows, for the report.
    pub caption: String,
    pub png: PathBuf,
    pub svg: PathBuf,
}

impl AnyChart {
    /// Write as `dir/name.png` and `dir/name.svg`.
    pub fn save(&self, dir: &Path, name: &str, caption: &str) -> Result<ChartFile, ReportError> {
        let [png, svg] = match self {
            AnyChart::Xy(c) => save(c, dir, name)?,
            AnyChart::Bar(c) => save(c, dir, name)?,
        };
        Ok(ChartFile {
            name: name.into(),
            caption: caption.into(),
            png,
            svg,
        })
    }
}

/// Write `chart` as `dir/name.png` and `dir/name.svg`; returns both paths.
pub fn save(chart: &impl Chart, dir: &Path, name: &str) -> Result<[PathBuf; 2], ReportError> {
    register_font();
    std::fs::create_dir_all(dir).map_err(ReportError::io(dir))?;
    let size = chart.size();
    let png = dir.join(format!("{name}.png"));
    let svg = dir.join(format!("{name}.svg"));
    let fail = |p: &Path, source: Box<dyn std::error::Error + Send + Sync>| ReportError::Chart {
        path: p.to_path_buf(),
        source,
    };
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&png, e.into()))?;
        chart.draw(&root).map_err(|e| fail(&png, e))?;
        root.present().map_err(|e| fail(&png, e.into()))?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&svg, e.into()))?;
        chart.draw(&root).map_err(|e| fail(&svg, e))?;
        root.present().map_err(|e| fail(&svg, e.into()))?;
    }
    Ok([png, svg])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis_places_percentiles_evenly() {
        let s = Scale::Nines;
        assert!((s.to_axis(0.9).unwrap() - 1.0).abs() < 1e-9);
        assert!((s.to_axis(0.999).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(s.label(2.0), "99%");
        assert_eq!(s.label(3.0), "99.9%");
        assert_eq!(s.label(2f64.log10()), "50%");
        assert_eq!(s.to_axis(1.0), None);
    }

    #[test]
    fn an_all_zero_series_sits_on_the_bottom_of_a_zero_to_one_axis() {
        let p = XyPanel::new("t", Scale::Linear, "lag", Scale::Linear);
        let (x, y) = p.ranges(&[vec![(0.0, 0.0), (5.0, 0.0)]]);
        assert_eq!(y, (0.0, 1.0));
        assert!(x.0 <= 0.0 && x.1 >= 5.0, "{x:?}");
        // A flat non-zero series still gets room on both sides.
        let (_, y) = p.ranges(&[vec![(0.0, 4.0), (5.0, 4.0)]]);
        assert!(y.0 < 4.0 && y.1 > 4.0, "{y:?}");
    }

    #[test]
    fn ticks_cover_the_range() {
        let t = nice_ticks(0.0, 97.0);
        assert_eq!(t.first(), Some(&0.0));
        assert!(t.len() >= 4 && t.len() <= 9, "{t:?}");
        let t = Scale::Log.ticks(0.0, 3.0);
        assert!(t.contains(&0.0) && t.contains(&3.0));
        assert_eq!(fmt_num(1500.0), "1500");
        assert_eq!(fmt_num(25_000.0), "25k");
        assert_eq!(fmt_num(0.25), "0.25");
    }
}
