//! The charts (PNG, drawn with plotters) and a self-contained HTML report that embeds them. Each
//! chart has one panel per policy on shared axes, so the policies compare at a glance.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::Context;
use base64::Engine as _;
use plotters::prelude::*;

use super::Run;
use super::workload::Workload;

/// Slices of the time axis each chart draws.
const BUCKETS: usize = 600;
const PANEL_HEIGHT: u32 = 220;
const WIDTH: u32 = 1000;

struct Series {
    label: &'static str,
    color: RGBColor,
    values: Vec<Option<f64>>,
}

/// One chart: a title, and the series of each run.
struct Chart {
    file: &'static str,
    title: &'static str,
    unit: &'static str,
    panels: Vec<(String, Vec<Series>)>,
}

/// Writes one PNG per chart into `dir`; returns their paths.
pub fn charts(dir: &Path, runs: &[Run], workload: &Workload, until_ms: u64) -> anyhow::Result<Vec<PathBuf>> {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // The font travels with the binary, so charts render the same on any machine.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    });
    let mut demand =
        Chart { file: "demand.png", title: "Demand: tasks pending or running", unit: "tasks", panels: vec![] };
    let mut capacity =
        Chart { file: "capacity.png", title: "Capacity: workers by state", unit: "workers", panels: vec![] };
    let mut wait =
        Chart { file: "queue_wait.png", title: "Queue wait of tasks starting", unit: "seconds", panels: vec![] };
    for run in runs {
        let fleet = super::figures::resample(&run.recorder.curve, until_ms, BUCKETS);
        let column = |i: usize| fleet.iter().map(|v| Some(v[i])).collect::<Vec<_>>();
        let busy_and_idle: Vec<Option<f64>> = fleet.iter().map(|v| Some(v[2] + v[3])).collect();
        let busy_idle_starting: Vec<Option<f64>> = fleet.iter().map(|v| Some(v[1] + v[2] + v[3])).collect();
        demand.panels.push((
            run.label.clone(),
            vec![Series { label: "demand", color: RGBColor(200, 80, 40), values: column(0) }],
        ));
        capacity.panels.push((
            run.label.clone(),
            vec![
                Series { label: "starting", color: RGBColor(230, 180, 60), values: busy_idle_starting },
                Series { label: "idle", color: RGBColor(120, 170, 220), values: busy_and_idle },
                Series { label: "busy", color: RGBColor(30, 90, 170), values: column(2) },
            ],
        ));
        let waits = super::figures::wait_series(&run.recorder, workload, until_ms, BUCKETS);
        wait.panels.push((
            run.label.clone(),
            vec![Series {
                label: "mean wait",
                color: RGBColor(120, 60, 160),
                values: waits.iter().map(|w| w.map(|ms| ms / 1000.0)).collect(),
            }],
        ));
    }
    [demand, capacity, wait].iter().map(|c| draw(dir, c, until_ms)).collect()
}

fn draw(dir: &Path, chart: &Chart, until_ms: u64) -> anyhow::Result<PathBuf> {
    let path = dir.join(chart.file);
    let height = 60 + PANEL_HEIGHT * chart.panels.len() as u32;
    let (hours, x_unit) = if until_ms >= 3 * 3_600_000 { (3_600_000.0, "hours") } else { (60_000.0, "minutes") };
    let x_max = until_ms as f64 / hours;
    let y_max = chart
        .panels
        .iter()
        .flat_map(|(_, series)| series.iter().flat_map(|s| s.values.iter().flatten().copied()))
        .fold(1.0f64, f64::max)
        * 1.1;
    {
        let root = BitMapBackend::new(&path, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (title, body) = root.split_vertically(50);
        title.titled(chart.title, ("sans-serif", 26))?;
        let panels = body.split_evenly((chart.panels.len(), 1));
        for (area, (label, series)) in panels.iter().zip(&chart.panels) {
            let mut c = ChartBuilder::on(area)
                .caption(label, ("sans-serif", 18))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
            c.configure_mesh().x_desc(x_unit).y_desc(chart.unit).light_line_style(WHITE.mix(0.0)).draw()?;
            let step = x_max / BUCKETS as f64;
            for s in series {
                let points = s.values.iter().enumerate().filter_map(|(i, v)| v.map(|v| ((i as f64 + 0.5) * step, v)));
                c.draw_series(AreaSeries::new(points, 0.0, s.color.mix(0.6)).border_style(s.color))?
                    .label(s.label)
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], s.color.filled()));
            }
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.8))
                .draw()?;
        }
        root.present().with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

/// `report.html`: the figures table and every chart, embedded, so the file opens from disk anywhere.
pub fn html(dir: &Path, title: &str, rows: &[Vec<String>], charts: &[PathBuf]) -> anyhow::Result<PathBuf> {
    let mut images = String::new();
    for chart in charts {
        let bytes = std::fs::read(chart)?;
        let name = chart.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        images.push_str(&format!(
            "<figure><img alt=\"{name}\" src=\"data:image/png;base64,{}\"><figcaption>{name}</figcaption></figure>\n",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ));
    }
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let cells = |tag: &str, row: &mut dyn Iterator<Item = &str>| -> String {
        row.map(|c| format!("<{tag}>{}</{tag}>", escape(c))).collect::<String>()
    };
    let mut table = format!("<tr>{}</tr>\n", cells("th", &mut super::COLUMNS.iter().copied()));
    for row in rows {
        table.push_str(&format!("<tr>{}</tr>\n", cells("td", &mut row.iter().map(String::as_str))));
    }
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>body{{font-family:sans-serif;max-width:1040px;margin:2em auto;color:#222}}table{{border-collapse:collapse;font-size:14px}}td,th{{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}}td:first-child,th:first-child{{text-align:left}}img{{max-width:100%;border:1px solid #ddd}}figure{{margin:1.5em 0}}</style></head>\n<body><h1>{t}</h1>\n<p>Times are queue waits (arrival to start) and time to capacity after each burst; worker-s is the integral of connected workers, cost prices it per adapter.</p>\n<table>\n{table}</table>\n{images}</body></html>\n",
        t = escape(title),
    );
    let path = dir.join("report.html");
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
