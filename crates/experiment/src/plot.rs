//! `--plot FILE.svg`: mean test accuracy per epoch for the three arms, with plotters.

use std::path::Path;

use crate::stats::Report;
use crate::{ARTICLE_CE_ACC, ARTICLE_SMOOTHLOSS_ACC};

/// Writes the SVG of mean test accuracy per epoch.
pub fn plot(r: &Report, path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Seed article experiment: mean test accuracy over {} seeds (alpha {}, lr {})",
                r.seeds, r.alpha, r.lr
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..r.epochs as f64, 0f64..100f64)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("epoch (full-batch Adam step)")
        .y_desc("mean test accuracy (%)")
        .draw()
        .map_err(|e| err(&e))?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
    ];
    for (a, &color) in r.arms.iter().zip(&colors) {
        let pts = a
            .mean_test_acc_per_epoch
            .iter()
            .enumerate()
            .map(|(e, &v)| (e as f64, v));
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("{} (final {:.2}%)", a.label, a.test.mean))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    for (claim, name, color) in [
        (ARTICLE_CE_ACC, "article's claim, cross-entropy", colors[0]),
        (
            ARTICLE_SMOOTHLOSS_ACC,
            "article's claim, SmoothLoss",
            colors[1],
        ),
    ] {
        let style = color.mix(0.45).stroke_width(1);
        chart
            .draw_series(LineSeries::new(
                [(0.0, claim), (r.epochs as f64, claim)],
                style,
            ))
            .map_err(|e| err(&e))?
            .label(format!("{name}: {claim:.2}%"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        // Between the trained curves (about 60%) and the article formula's (about 20%).
        .position(SeriesLabelPosition::Coordinate(418, 255))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
