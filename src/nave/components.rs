//! Connected regions of a label map: NAVE's cluster maps read as segments
//! (localisation's boxes, the detector's suspect regions). The one flood fill.

/// One 4-connected component of a label map: its pixels as (y, x).
#[derive(Debug, Clone)]
pub struct Component {
    pub label: i64,
    pub pixels: Vec<(usize, usize)>,
}

/// Splits every label of an `h x w` map into 4-connected components and drops
/// those with fewer than `min_size` pixels.
pub fn components(labels: &[i64], h: usize, w: usize, min_size: usize) -> Vec<Component> {
    let mut seen = vec![false; h * w];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..h * w {
        if seen[start] {
            continue;
        }
        let label = labels[start];
        seen[start] = true;
        stack.push(start);
        let mut pixels = Vec::new();
        while let Some(i) = stack.pop() {
            let (y, x) = (i / w, i % w);
            pixels.push((y, x));
            let mut visit = |j: usize| {
                if !seen[j] && labels[j] == label {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < w {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - w);
            }
            if y + 1 < h {
                visit(i + w);
            }
        }
        if pixels.len() >= min_size {
            out.push(Component { label, pixels });
        }
    }
    out
}

/// The largest 4-connected region of `mask`'s true cells (the first found,
/// in row-major order, among equals), as a mask; None when none is true.
pub fn largest_region(mask: &[bool], h: usize, w: usize) -> Option<Vec<bool>> {
    let labels: Vec<i64> = mask.iter().map(|&m| m as i64).collect();
    let mut best: Option<Component> = None;
    for c in components(&labels, h, w, 1) {
        if c.label == 1
            && best
                .as_ref()
                .is_none_or(|b| c.pixels.len() > b.pixels.len())
        {
            best = Some(c);
        }
    }
    let mut cells = vec![false; h * w];
    for (y, x) in best?.pixels {
        cells[y * w + x] = true;
    }
    Some(cells)
}

/// The true pixels of `mask` (`h x w`) linked to `seed` (y, x) through true
/// pixels each at most `gap` rows and columns from the last (1: the
/// 8-connected region), as (y, x), the seed first; empty when the seed is
/// not true. A stroke drawn translucent breaks into pieces a pixel or two
/// apart; a gap above 1 keeps them one.
pub fn linked_to(
    mask: &[bool],
    h: usize,
    w: usize,
    seed: (usize, usize),
    gap: usize,
) -> Vec<(usize, usize)> {
    let (sy, sx) = seed;
    if sy >= h || sx >= w || !mask[sy * w + sx] {
        return Vec::new();
    }
    let mut seen = vec![false; h * w];
    seen[sy * w + sx] = true;
    let (mut stack, mut out) = (vec![seed], Vec::new());
    while let Some((y, x)) = stack.pop() {
        out.push((y, x));
        for ny in y.saturating_sub(gap)..(y + gap + 1).min(h) {
            for nx in x.saturating_sub(gap)..(x + gap + 1).min(w) {
                let j = ny * w + nx;
                if mask[j] && !seen[j] {
                    seen[j] = true;
                    stack.push((ny, nx));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_four_connected_and_small_ones_dropped() {
        // 0 0 1
        // 1 0 1
        // 1 1 0   -> label 0: {(0,0),(0,1),(1,1)} and {(2,2)}; label 1: {(0,2),(1,2)}, {(1,0),(2,0),(2,1)}
        let labels = [0, 0, 1, 1, 0, 1, 1, 1, 0];
        let cs = components(&labels, 3, 3, 1);
        let mut sizes: Vec<(i64, usize)> = cs.iter().map(|c| (c.label, c.pixels.len())).collect();
        sizes.sort();
        assert_eq!(sizes, vec![(0, 1), (0, 3), (1, 2), (1, 3)]);
        assert_eq!(components(&labels, 3, 3, 3).len(), 2);
    }

    #[test]
    fn pixels_linked_across_gaps_up_to_the_gap() {
        // 1 1 0 0 1
        // 0 0 1 0 0
        // 0 0 0 0 1
        #[rustfmt::skip]
        let mask = [
            true, true, false, false, true,
            false, false, true, false, false,
            false, false, false, false, true,
        ];
        let sorted = |mut v: Vec<(usize, usize)>| {
            v.sort();
            v
        };
        // Gap 1 (8-connected): the top-left pair and the diagonal one.
        assert_eq!(
            sorted(linked_to(&mask, 3, 5, (0, 0), 1)),
            vec![(0, 0), (0, 1), (1, 2)]
        );
        // Gap 2: (1, 2) reaches (0, 4) and (2, 4).
        assert_eq!(linked_to(&mask, 3, 5, (0, 0), 2).len(), 5);
        assert_eq!(
            linked_to(&mask, 3, 5, (0, 0), 2)[0],
            (0, 0),
            "the seed first"
        );
        // A seed that is not in the mask, or outside it: nothing.
        assert!(linked_to(&mask, 3, 5, (2, 0), 3).is_empty());
        assert!(linked_to(&mask, 3, 5, (7, 0), 3).is_empty());
    }

    #[test]
    fn the_largest_region_is_four_connected_and_the_first_among_equals() {
        // 1 0 1
        // 0 0 1
        // 1 1 0   -> regions of 1, 2 and 2 cells: the (0,2)-(1,2) pair comes first.
        let mask = [true, false, true, false, false, true, true, true, false];
        let got = largest_region(&mask, 3, 3).unwrap();
        assert_eq!(
            got,
            vec![false, false, true, false, false, true, false, false, false]
        );
        assert!(largest_region(&[false; 4], 2, 2).is_none());
    }
}
