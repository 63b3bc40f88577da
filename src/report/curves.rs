//! Training curves as SVG (plotters): per regime, the mean over seeds per
//! epoch as a line and the range over seeds as a band.
use std::collections::BTreeMap;

use crate::nave::colour::PALETTE;
use crate::run_folder::EpochMetrics;
use plotters::prelude::*;

/// (epoch, mean, min, max) of one metric over the runs of a regime.
fn summarise(
    runs: &[Vec<EpochMetrics>],
    get: &dyn Fn(&EpochMetrics) -> Option<f64>,
) -> Vec<(f64, f64, f64, f64)> {
    let epochs = runs.iter().map(Vec::len).max().unwrap_or(0);
    (0..epochs)
        .filter_map(|e| {
            let vals: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.get(e).and_then(get))
                .filter(|v| v.is_finite())
                .collect();
            if vals.is_empty() {
                return None;
            }
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let min = vals.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            Some(((e + 1) as f64, mean, min, max))
        })
        .collect()
}

type Metric<'a> = (
    &'a str,
    &'a dyn Fn(&EpochMetrics) -> Option<f64>,
    ShapeStyleKind,
);

#[derive(Clone, Copy)]
enum ShapeStyleKind {
    Solid,
    Dashed,
}

fn chart(
    title: &str,
    y_label: &str,
    data: &BTreeMap<String, Vec<Vec<EpochMetrics>>>,
    metrics: &[Metric],
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut series = Vec::new();
        for (i, (regime, runs)) in data.iter().enumerate() {
            for (name, get, kind) in metrics {
                series.push((
                    format!(
                        "{regime}{}",
                        if name.is_empty() {
                            String::new()
                        } else {
                            format!(" {name}")
                        }
                    ),
                    i,
                    *kind,
                    summarise(runs, *get),
                ));
            }
        }
        let max_epoch = series
            .iter()
            .flat_map(|s| s.3.iter().map(|p| p.0))
            .fold(1.0, f64::max);
        let (lo, hi) = series
            .iter()
            .flat_map(|s| s.3.iter().flat_map(|p| [p.2, p.3]))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        let (lo, hi) = if lo.is_finite() {
            (lo.min(0.0), hi.max(lo + 1e-6) * 1.05)
        } else {
            (0.0, 1.0)
        };
        let mut ctx = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(48)
            .build_cartesian_2d(1.0..max_epoch.max(2.0), lo..hi)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        ctx.configure_mesh()
            .x_desc("epoch")
            .y_desc(y_label)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for (label, i, kind, points) in &series {
            let c = PALETTE[i % PALETTE.len()];
            let colour = RGBColor(c[0], c[1], c[2]);
            let band: Vec<(f64, f64)> = points
                .iter()
                .map(|p| (p.0, p.3))
                .chain(points.iter().rev().map(|p| (p.0, p.2)))
                .collect();
            ctx.draw_series(std::iter::once(Polygon::new(band, colour.mix(0.15))))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let line: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
            let style = ShapeStyle::from(&colour).stroke_width(2);
            let drawn = match kind {
                ShapeStyleKind::Solid => ctx
                    .draw_series(LineSeries::new(line, style))
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                ShapeStyleKind::Dashed => ctx
                    .draw_series(DashedLineSeries::new(line, 6, 4, style))
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            };
            drawn.label(label.clone()).legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 16, y)],
                    ShapeStyle::from(&colour).stroke_width(2),
                )
            });
        }
        ctx.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(svg)
}

/// The report's curve files: (file name, SVG text).
pub fn plots(
    data: &BTreeMap<String, Vec<Vec<EpochMetrics>>>,
) -> anyhow::Result<Vec<(String, String)>> {
    let loss = |m: &EpochMetrics| Some(m.train_loss);
    let clean = |m: &EpochMetrics| m.test_accuracy.get("clean").copied();
    let flipped = |m: &EpochMetrics| m.test_accuracy.get("flipped").copied();
    Ok(vec![
        (
            "curves_loss.svg".to_string(),
            chart(
                "training loss",
                "loss",
                data,
                &[("", &loss, ShapeStyleKind::Solid)],
            )?,
        ),
        (
            "curves_accuracy.svg".to_string(),
            chart(
                "test accuracy: clean (solid), watermark flipped (dashed)",
                "accuracy",
                data,
                &[
                    ("clean", &clean, ShapeStyleKind::Solid),
                    ("flipped", &flipped, ShapeStyleKind::Dashed),
                ],
            )?,
        ),
    ])
}
