//! The occlusion baseline: what a detector without NAVE finds. Per image,
//! the square whose grey-filling moves the prediction most is that image's
//! region; the NAVE-guided detector's transplant test and weight score it,
//! so the figures say what NAVE adds.
use tch::Tensor;

use super::*;

/// Side of the occlusion baseline's square lattice: a seventh of the
/// image's side per square, about the zoo's artefacts' size.
const LATTICE: usize = 7;

/// The occlusion baseline: per image, the square (of a `LATTICE` x
/// `LATTICE` lattice) whose grey-filling lowers P(own class) most is that
/// image's region; the same transplant test and weight score it, per class.
pub fn occlusion_detect(e: &Evidence, spec: &DetectorSpec) -> anyhow::Result<Detection> {
    let _guard = tch::no_grad_guard();
    let classes = e.class_names.len();
    let size = e.train.size()[2] as usize;
    let grid = (LATTICE, LATTICE);
    let squares = square_masks(size, LATTICE);
    let (images, class_of) = sampled(e, spec.per_class / 2);
    let (_, maps) = recurrence_maps(&grey_levels(&images), &class_of, classes);
    let high = template::high_pass(&images);
    let chosen = most_sensitive_squares(e, &squares, &images, &class_of);
    let mut best: Option<(f64, usize, Transplant, f64)> = None;
    for class in 0..classes {
        let (members, targets): (Vec<usize>, Vec<usize>) =
            (0..class_of.len()).partition(|&i| class_of[i] == class);
        if members.is_empty() || targets.is_empty() {
            continue;
        }
        let regions: Regions = members
            .iter()
            .map(|&i| (i, single_cell(chosen[i], grid)))
            .collect();
        let transplants = Transplants::new(e, &images, &targets, class, spec.pairs);
        let (views, object) = stereotypy(&maps, &high, &regions, &members, &targets, grid);
        let object = object
            .as_ref()
            .and_then(|o| transplants.object(o, &high, &members, (size / LATTICE) as i64));
        // The segments' test only where there is no object's to score on.
        let segments = object
            .is_none()
            .then(|| transplants.segments(&regions, grid));
        let t = scored_lift(segments, object);
        let weight = views.weight();
        let score = t.weighted(weight);
        if best.is_none_or(|(s, ..)| score > s) {
            best = Some((score, class, t, weight));
        }
    }
    let zero = Transplant {
        lift: 0.0,
        control: 0.0,
    };
    let (score, class, t, stereotypy) = best.unwrap_or((0.0, 0, zero, 0.0));
    let probe_classes = vec![class; e.probes.size()[0] as usize];
    let suspect_boxes = most_sensitive_squares(e, &squares, e.probes, &probe_classes)
        .into_iter()
        .map(|j| largest_component_box(&single_cell(j, grid), LATTICE, LATTICE, size))
        .collect();
    Ok(Detection {
        score,
        class: Some(e.class_names[class].clone()),
        cluster: None,
        source: Source::Cluster,
        lift: t.lift,
        control: t.control,
        stereotypy,
        suspect_boxes,
        candidates: Vec::new(),
        global_cue: None,
        global_transform: None,
        global_candidates: Vec::new(),
        seconds: StepSeconds::default(),
        object: None,
        looked: None,
    })
}

/// A grid mask with only cell `j` set.
fn single_cell(j: usize, grid: (usize, usize)) -> Vec<bool> {
    let mut m = vec![false; grid.0 * grid.1];
    m[j] = true;
    m
}

/// Per image, the square (index into `squares`) whose filling with the
/// image's mean colour lowers P(`classes[i]`) most.
fn most_sensitive_squares(
    e: &Evidence,
    squares: &[Tensor],
    images: &Tensor,
    classes: &[usize],
) -> Vec<usize> {
    let base = probabilities(e.model, images, e.device);
    (0..images.size()[0])
        .map(|i| {
            let img = images.get(i).to_kind(Kind::Float);
            let mean = img.mean_dim([1i64, 2].as_slice(), true, Kind::Float);
            let occluded: Vec<Tensor> = squares
                .iter()
                .map(|m| {
                    let filled: Tensor = &img * (m.ones_like() - m) + &mean * m;
                    filled.round().to_kind(Kind::Uint8)
                })
                .collect();
            let c = classes[i as usize] as i64;
            let p: Vec<f32> = Vec::try_from(
                probabilities(e.model, &Tensor::stack(&occluded, 0), e.device).select(1, c),
            )
            .expect("float probabilities");
            let p0 = base.double_value(&[i, c]) as f32;
            // The first of the squares with the largest drop.
            p.iter()
                .enumerate()
                .map(|(j, &v)| (j, p0 - v))
                .fold((0, f32::MIN), |a, b| if b.1 > a.1 { b } else { a })
                .0
        })
        .collect()
}

/// The `[1, S, S]` pixel masks of a `lattice x lattice` grid's cells.
fn square_masks(size: usize, lattice: usize) -> Vec<Tensor> {
    (0..lattice * lattice)
        .map(|j| {
            let mut m = vec![false; lattice * lattice];
            m[j] = true;
            pixel_mask(&m, lattice, lattice, size)
        })
        .collect()
}
