//! The figure description the plots fill in, and its one renderer (SVG or PNG by extension).

use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use plotters::coord::ranged1d::{SegmentValue, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::png_text::GlyphText;
use super::{format_number, Format, PlotError};

/// DejaVu Sans 2.37 (Debian `fonts-dejavu-core`; license in `assets/fonts/`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType file checked in with the source; a test renders text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One line of a panel.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// `(x, low, high)`: a shaded band (the spread over seeds).
    pub band: Vec<(f64, f64, f64)>,
    pub stroke: Stroke,
    /// Index into the palette (the same index, the same colour in every panel).
    pub color: usize,
    /// Draw a dot at every point (sparse series such as test evaluations or grid shapes).
    pub markers: bool,
    /// Leave the line out of the legend (e.g. the test line of a run already named by its train line).
    pub hide_label: bool,
}

/// How a series' line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    Solid,
    Dashed,
    Dotted,
}

impl Stroke {
    pub fn dashed_if(dashed: bool) -> Stroke {
        if dashed {
            Stroke::Dashed
        } else {
            Stroke::Solid
        }
    }
}

/// A horizontal reference line (a measured ceiling).
#[derive(Debug, Clone)]
pub struct HLine {
    pub label: String,
    pub y: f64,
    pub color: usize,
}

/// A panel of lines.
#[derive(Debug, Clone, Default)]
pub struct LinePanel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
    pub hlines: Vec<HLine>,
}

/// One segment of a horizontal bar: row `row` from `start` to `end` on the value axis.
#[derive(Debug, Clone)]
pub struct Bar {
    pub row: usize,
    pub start: f64,
    pub end: f64,
    pub color: usize,
}

/// Horizontal bars, one row per category (top to bottom), segments stacked within a row.
#[derive(Debug, Clone, Default)]
pub struct BarChart {
    pub title: String,
    pub x_label: String,
    pub rows: Vec<String>,
    pub bars: Vec<Bar>,
    /// Legend entries (label, colour); empty: no legend.
    pub legend: Vec<(String, usize)>,
}

#[derive(Debug, Clone)]
pub enum Panel {
    Lines(LinePanel),
    Bars(BarChart),
}

/// A titled figure of panels side by side (`columns` per row).
#[derive(Debug, Clone)]
pub struct Figure {
    pub title: String,
    pub panels: Vec<Panel>,
    pub columns: usize,
    /// Size of one panel in pixels (also the SVG's user units).
    pub panel_size: (u32, u32),
}

/// An 8-bit RGB buffer as a PNG file.
fn write_png(out: &Path, (width, height): (u32, u32), rgb: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    let file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut encoder = png::Encoder::new(file, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(())
}

/// Tableau's ten colours, then plotters' 99-colour palette.
fn color(i: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    match TAB10.get(i) {
        Some(&(r, g, b)) => RGBColor(r, g, b),
        None => {
            let c = Palette99::pick(i - TAB10.len()).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

/// Black shades for reference lines.
fn gray(i: usize) -> RGBColor {
    [RGBColor(0, 0, 0), RGBColor(110, 110, 110), RGBColor(170, 170, 170)][i % 3]
}

impl Figure {
    /// Writes the figure to `out`, SVG or PNG by its extension.
    pub fn render(&self, out: &Path) -> Result<(), PlotError> {
        let format = Format::from_path(out)?;
        register_font();
        let columns = self.columns.max(1);
        let rows = self.panels.len().div_ceil(columns).max(1);
        let size = (self.panel_size.0 * columns as u32, self.panel_size.1 * rows as u32 + 50);
        let draw_err = |e: &dyn std::fmt::Display| PlotError::Draw { path: out.to_path_buf(), message: e.to_string() };
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| draw_err(&e))?;
        }
        match format {
            Format::Svg => {
                let root = SVGBackend::new(out, size).into_drawing_area();
                self.draw(&root, rows, columns).map_err(|e| draw_err(&e))?;
                root.present().map_err(|e| draw_err(&e))?;
            }
            Format::Png => {
                let font = ab_glyph::FontRef::try_from_slice(FONT).map_err(|e| draw_err(&e))?;
                let mut rgb = vec![255u8; size.0 as usize * size.1 as usize * 3];
                {
                    let backend = BitMapBackend::with_buffer(&mut rgb, size);
                    let root = GlyphText::new(backend, font).into_drawing_area();
                    self.draw(&root, rows, columns).map_err(|e| draw_err(&e))?;
                    root.present().map_err(|e| draw_err(&e))?;
                }
                write_png(out, size, &rgb).map_err(|e| draw_err(&e))?;
            }
        }
        Ok(())
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        rows: usize,
        columns: usize,
    ) -> Result<(), Box<dyn std::error::Error + 'static>>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        // The title fits the width: DejaVu Sans averages about 0.55 em per character.
        let width = root.dim_in_pixel().0 as f64;
        let chars = self.title.chars().count().max(1) as f64;
        let size = (width / (0.5 * chars)).clamp(11.0, 22.0);
        let area = root.titled(&self.title, ("sans-serif", size))?;
        let cells = area.split_evenly((rows, columns));
        for (panel, cell) in self.panels.iter().zip(cells.iter()) {
            match panel {
                Panel::Lines(p) => draw_lines(cell, p)?,
                Panel::Bars(b) => draw_bars(cell, b)?,
            }
        }
        Ok(())
    }
}

/// The panel's data range on one axis, padded; on a log axis only positive values count.
fn range(values: impl Iterator<Item = f64>, log: bool) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return if log { 0.1..10.0 } else { 0.0..1.0 };
    }
    if log {
        let (lo, hi) = if hi / lo < 1.5 { (lo / 1.5, hi * 1.5) } else { (lo, hi) };
        lo / 1.15..hi * 1.15
    } else {
        let pad = if hi > lo { 0.04 * (hi - lo) } else { 0.5 * lo.abs().max(1.0) };
        lo - pad..hi + pad
    }
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &LinePanel,
) -> Result<(), Box<dyn std::error::Error + 'static>>
where
    DB::ErrorType: 'static,
{
    let xs = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0).chain(s.band.iter().map(|b| b.0)));
    let x = range(xs, p.log_x);
    let ys = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|q| q.1).chain(s.band.iter().flat_map(|b| [b.1, b.2])).collect::<Vec<_>>());
    let y = range(ys.chain(p.hlines.iter().map(|h| h.y)), p.log_y);
    match (p.log_x, p.log_y) {
        (false, false) => lines_in(area, p, RangedCoordf64::from(x.clone()), RangedCoordf64::from(y), x),
        (true, false) => lines_in(area, p, LogCoord::from(x.clone().log_scale()), RangedCoordf64::from(y), x),
        (false, true) => lines_in(area, p, RangedCoordf64::from(x.clone()), LogCoord::from(y.log_scale()), x),
        (true, true) => lines_in(area, p, LogCoord::from(x.clone().log_scale()), LogCoord::from(y.log_scale()), x),
    }
}

fn lines_in<DB, X, Y>(
    area: &DrawingArea<DB, Shift>,
    p: &LinePanel,
    xc: X,
    yc: Y,
    x: Range<f64>,
) -> Result<(), Box<dyn std::error::Error + 'static>>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let legend_at = legend_corner(p, &xc, &yc);
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(46)
        .y_label_area_size(70)
        .build_cartesian_2d(xc, yc)?;
    chart
        .configure_mesh()
        .x_labels(if p.log_x { 6 } else { 10 })
        .y_labels(if p.log_y { 6 } else { 10 })
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .x_label_formatter(&|v| format_number(*v))
        .y_label_formatter(&|v| format_number(*v))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let ok = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
    for s in &p.series {
        let c = color(s.color);
        if !s.band.is_empty() {
            let mut poly: Vec<(f64, f64)> = s.band.iter().map(|b| (b.0, b.1)).collect();
            poly.extend(s.band.iter().rev().map(|b| (b.0, b.2)));
            poly.retain(|q| ok(q.0, p.log_x) && ok(q.1, p.log_y));
            chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.2).filled())))?;
        }
        let points: Vec<(f64, f64)> =
            s.points.iter().copied().filter(|q| ok(q.0, p.log_x) && ok(q.1, p.log_y)).collect();
        let style = c.stroke_width(2);
        let anno = match s.stroke {
            Stroke::Solid => chart.draw_series(LineSeries::new(points.clone(), style))?,
            Stroke::Dashed => chart.draw_series(DashedLineSeries::new(points.clone(), 8, 5, style))?,
            Stroke::Dotted => chart.draw_series(DashedLineSeries::new(points.clone(), 2, 4, style))?,
        };
        if !s.hide_label {
            let length = if s.stroke == Stroke::Solid { 20 } else { 7 };
            anno.label(s.label.as_str())
                .legend(move |(lx, ly)| PathElement::new(vec![(lx, ly), (lx + length, ly)], c.stroke_width(2)));
        }
        if s.markers || points.len() == 1 {
            chart.draw_series(points.iter().map(|&q| Circle::new(q, 3, c.filled())))?;
        }
    }
    for h in &p.hlines {
        if !ok(h.y, p.log_y) {
            continue;
        }
        let c = gray(h.color);
        chart
            .draw_series(DashedLineSeries::new(vec![(x.start, h.y), (x.end, h.y)], 3, 4, c.stroke_width(1)))?
            .label(h.label.as_str())
            .legend(move |(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 20, ly)], c.stroke_width(1)));
    }
    if p.series.iter().any(|s| !s.hide_label) || !p.hlines.is_empty() {
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .position(legend_at)
            .draw()?;
    }
    Ok(())
}

/// The corner of the plot with the fewest data points (upper right when it is a tie).
fn legend_corner<X, Y>(p: &LinePanel, xc: &X, yc: &Y) -> SeriesLabelPosition
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let unit = |x: f64, y: f64| {
        let px = xc.map(&x, (0, 1000)) as f64 / 1000.0;
        let py = yc.map(&y, (0, 1000)) as f64 / 1000.0;
        (px, py)
    };
    let mut points: Vec<(f64, f64)> = p.series.iter().flat_map(|s| s.points.iter().map(|q| unit(q.0, q.1))).collect();
    for h in &p.hlines {
        points.extend((0..=10).map(|i| (i as f64 / 10.0, unit(1.0, h.y).1)));
    }
    // Between two points of a line, the segment crosses too: sample it.
    for s in &p.series {
        for w in s.points.windows(2) {
            let (a, b) = (unit(w[0].0, w[0].1), unit(w[1].0, w[1].1));
            points.extend((1..8).map(|i| {
                let f = i as f64 / 8.0;
                (a.0 + f * (b.0 - a.0), a.1 + f * (b.1 - a.1))
            }));
        }
    }
    let count = |right: bool, upper: bool| {
        points
            .iter()
            .filter(|(x, y)| (if right { *x > 0.5 } else { *x < 0.5 }) && (if upper { *y > 0.55 } else { *y < 0.45 }))
            .count()
    };
    let corners = [
        (SeriesLabelPosition::UpperRight, count(true, true)),
        (SeriesLabelPosition::UpperLeft, count(false, true)),
        (SeriesLabelPosition::LowerRight, count(true, false)),
        (SeriesLabelPosition::LowerLeft, count(false, false)),
    ];
    let best = corners.iter().map(|c| c.1).min().unwrap_or(0);
    corners.into_iter().find(|c| c.1 == best).map(|c| c.0).unwrap_or(SeriesLabelPosition::UpperRight)
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    b: &BarChart,
) -> Result<(), Box<dyn std::error::Error + 'static>>
where
    DB::ErrorType: 'static,
{
    let (area, legend_area) = if b.legend.is_empty() {
        (area.clone(), None)
    } else {
        let longest = b.legend.iter().map(|l| l.0.chars().count()).max().unwrap_or(8) as u32;
        let (w, _) = area.dim_in_pixel();
        let (left, right) = area.split_horizontally(w.saturating_sub(40 + 8 * longest));
        (left, Some(right))
    };
    let n = b.rows.len().max(1);
    let x_max = b.bars.iter().map(|s| s.end).fold(0.0_f64, f64::max).max(1e-9) * 1.08;
    let longest = b.rows.iter().map(|r| r.chars().count()).max().unwrap_or(4) as u32;
    let mut chart = ChartBuilder::on(&area)
        .caption(&b.title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(46)
        .y_label_area_size(20 + 8 * longest)
        .build_cartesian_2d(0.0..x_max, (0..n - 1).into_segmented())?;
    let rows = b.rows.clone();
    chart
        .configure_mesh()
        .x_desc(b.x_label.as_str())
        .x_label_formatter(&|v| format_number(*v))
        .y_label_formatter(&move |v| match v {
            // Row 0 at the top: the axis counts upwards.
            SegmentValue::CenterOf(i) if *i < n => rows[n - 1 - i].clone(),
            _ => String::new(),
        })
        .y_labels(n)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .disable_y_mesh()
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart.draw_series(b.bars.iter().map(|s| {
        let row = n - 1 - s.row;
        let mut r = Rectangle::new(
            [(s.start, SegmentValue::Exact(row)), (s.end, SegmentValue::Exact(row + 1))],
            color(s.color).filled(),
        );
        r.set_margin(3, 3, 0, 0);
        r
    }))?;
    if let Some(legend) = legend_area {
        for (i, (label, c)) in b.legend.iter().enumerate() {
            let y = 50 + 20 * i as i32;
            legend.draw(&Rectangle::new([(8, y - 6), (20, y + 6)], color(*c).filled()))?;
            legend.draw(&Text::new(label.as_str(), (26, y - 7), ("sans-serif", 13)))?;
        }
    }
    Ok(())
}
