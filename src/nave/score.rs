//! Clever Hans measures (DESIGN.md): `wm_iou`, `wm_shift` (1 - ARI outside
//! the dilated box), and the adjusted Rand index they use.
use std::collections::HashMap;

use crate::data::watermark::WmBox;

fn comb2(n: u64) -> f64 {
    (n as f64) * (n as f64 - 1.0) / 2.0
}

/// Adjusted Rand index (Hubert and Arabie) of two labelings of the same points.
/// 1 for identical partitions (up to renaming), about 0 for unrelated ones.
pub fn adjusted_rand_index(a: &[i64], b: &[i64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let n = a.len() as u64;
    let mut table: HashMap<(i64, i64), u64> = HashMap::new();
    let mut rows: HashMap<i64, u64> = HashMap::new();
    let mut cols: HashMap<i64, u64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let index: f64 = table.values().map(|&v| comb2(v)).sum();
    let sum_a: f64 = rows.values().map(|&v| comb2(v)).sum();
    let sum_b: f64 = cols.values().map(|&v| comb2(v)).sum();
    let expected = sum_a * sum_b / comb2(n).max(1.0);
    let max = (sum_a + sum_b) / 2.0;
    if (max - expected).abs() < 1e-12 {
        // Both partitions trivial (one cluster, or all singletons) and equal.
        return 1.0;
    }
    (index - expected) / (max - expected)
}

/// max over segments of IoU(segment, box), on a `size x size` label map.
pub fn wm_iou(labels: &[i64], size: usize, b: &WmBox) -> f64 {
    let mut inter: HashMap<i64, u64> = HashMap::new();
    let mut area: HashMap<i64, u64> = HashMap::new();
    for y in 0..size {
        for x in 0..size {
            let l = labels[y * size + x];
            *area.entry(l).or_default() += 1;
            if b.contains(x as i64, y as i64) {
                *inter.entry(l).or_default() += 1;
            }
        }
    }
    let box_area = (b.side * b.side) as f64;
    inter
        .iter()
        .map(|(l, &i)| i as f64 / (area[l] as f64 + box_area - i as f64))
        .fold(0.0, f64::max)
}

/// 1 - ARI between the clean and watermarked label maps over the pixels
/// outside the box dilated by `margin` pixels on every side.
pub fn wm_shift(clean: &[i64], marked: &[i64], size: usize, b: &WmBox, margin: i64) -> f64 {
    let grown = WmBox {
        x: b.x - margin,
        y: b.y - margin,
        side: b.side + 2 * margin,
    };
    let (mut a, mut m) = (Vec::new(), Vec::new());
    for y in 0..size {
        for x in 0..size {
            if !grown.contains(x as i64, y as i64) {
                a.push(clean[y * size + x]);
                m.push(marked[y * size + x]);
            }
        }
    }
    if a.len() < 2 {
        return 0.0;
    }
    1.0 - adjusted_rand_index(&a, &m)
}

/// NumPy's median: the mean of the two middle values for an even count; NaN
/// for no values.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[m],
        _ => (v[m - 1] + v[m]) / 2.0,
    }
}

/// Mean and (sample) standard deviation.
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    let sd = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ari_known_values() {
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 3, 3]), 1.0);
        // scikit-learn: adjusted_rand_score([0,0,1,1], [0,0,1,2]) = 0.5714285714285715
        assert!(
            (adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.5714285714285715).abs() < 1e-12
        );
        // Crossed partitions: index 0, expected 6*3/15 = 1.2, max 4.5 -> -1.2 / 3.3 = -4/11.
        assert!(
            (adjusted_rand_index(&[0, 0, 0, 1, 1, 1], &[0, 1, 2, 0, 1, 2]) + 4.0 / 11.0).abs()
                < 1e-12
        );
    }

    #[test]
    fn wm_iou_and_shift() {
        let size = 8;
        let b = WmBox {
            x: 2,
            y: 2,
            side: 2,
        };
        // A segment that is exactly the box: IoU 1.
        let labels: Vec<i64> = (0..64)
            .map(|i| if b.contains(i % 8, i / 8) { 1 } else { 0 })
            .collect();
        assert_eq!(wm_iou(&labels, size, &b), 1.0);
        // A segment of the box plus 4 more pixels: IoU 4 / 8.
        let mut wider = labels.clone();
        for i in [0, 1, 8, 9] {
            wider[i] = 1;
        }
        assert_eq!(wm_iou(&wider, size, &b), 0.5);
        // Same map outside the (dilated) box: no shift; a changed outside: shift > 0.
        assert_eq!(wm_shift(&labels, &wider, size, &b, 2), 0.0);
        let mut changed = labels.clone();
        for v in changed.iter_mut().skip(40) {
            *v = 2;
        }
        assert!(wm_shift(&labels, &changed, size, &b, 0) > 0.3);
        assert_eq!(mean_sd(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[10.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
