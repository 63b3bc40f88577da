//! How the report writes numbers, dates, links and box outlines.
use std::path::{Path, PathBuf};

use crate::audit::MeanSd;
use crate::data::PixelBox;

/// A measure with three decimals; "—" where it is missing or not finite.
pub(super) fn number(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.3}"),
        _ => "—".to_string(),
    }
}

/// "mean ± sd"; "—" where the mean is not finite.
pub(super) fn mean_sd(m: &MeanSd) -> String {
    if m.mean.is_finite() {
        format!("{:.3} ± {:.3}", m.mean, m.sd)
    } else {
        "—".to_string()
    }
}

/// A Unix time as "YYYY-MM-DD HH:MM UTC".
pub(super) fn utc(unix: u64) -> String {
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// A relative link from the report folder to `target` (absolute or relative
/// to the working folder).
pub(super) fn link_to(report_dir: &Path, target: &Path) -> String {
    let abs = |p: &Path| {
        std::fs::canonicalize(p).unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|c| c.join(p))
                .unwrap_or(p.to_path_buf())
        })
    };
    let (from, to) = (abs(report_dir), abs(target));
    let common = from
        .components()
        .zip(to.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in from.components().skip(common) {
        rel.push("..");
    }
    for c in to.components().skip(common) {
        rel.push(c);
    }
    rel.to_string_lossy().into_owned()
}

/// CSS placing a box over an image of side `size` (percentages of the side).
pub(super) fn box_style(b: &PixelBox, size: f64) -> Option<String> {
    (size > 0.0).then(|| {
        format!(
            "left:{:.2}%;top:{:.2}%;width:{:.2}%;height:{:.2}%",
            100.0 * b.x as f64 / size,
            100.0 * b.y as f64 / size,
            100.0 * b.w as f64 / size,
            100.0 * b.h as f64 / size
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_numbers_and_boxes() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_795_701_583), "2026-11-26 13:59 UTC");
        assert_eq!(number(Some(0.12345)), "0.123");
        assert_eq!(number(Some(f64::NAN)), "—");
        assert_eq!(number(None), "—");
        assert_eq!(
            mean_sd(&MeanSd {
                mean: 0.5,
                sd: 0.25
            }),
            "0.500 ± 0.250"
        );
        assert_eq!(
            mean_sd(&MeanSd {
                mean: f64::NAN,
                sd: 0.0
            }),
            "—"
        );
        let b = PixelBox {
            x: 16,
            y: 32,
            w: 16,
            h: 4,
        };
        assert_eq!(
            box_style(&b, 64.0).unwrap(),
            "left:25.00%;top:50.00%;width:25.00%;height:6.25%"
        );
        assert_eq!(box_style(&b, 0.0), None);
    }
}
