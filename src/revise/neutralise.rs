//! What a verdict found, made useless to the model in its training images.
//!
//! Only the verdict is read: the recurring object as the detector matches it
//! (`ObjectMatch`: which images carry it and where), or the global cue's
//! transform and class. The run's artefact settings and recorded boxes are
//! never asked for; this module has no way to reach them.
//!
//! - `augment` (counterfactual augmentation, both ways): a random half of
//!   the flagged class's images lose the object (painted over where it
//!   matches best, as `mask` does), and the object, cut with a margin from
//!   the images that still carry it, is pasted at the place it was found
//!   onto images of the other classes that lack it, fading in over the
//!   margin, until each class carries it as often as the flagged class now
//!   does; as many of the other classes' remaining images are painted where
//!   they match best, so that neither a painted patch nor a pasted edge
//!   belongs to one class (each did, and cost clean accuracy); a frame or other
//!   global cue is put on half of the other classes' images and taken off
//!   half of the class's. The artefact stays in the data, tells the classes
//!   apart no more, and each class is seen with and without it.
//! - `mask`: in every image, where the object matches best (so where it
//!   shows, whether or not its match clears the detector's cut), its box is
//!   filled from the image around it (each pixel a distance-weighted mean of
//!   the box's four borders on its row and column); a global cue is taken off the class that
//!   carries it (the other classes' looks put on its images). The global
//!   cue moves images by the detector's own transform, except a frame
//!   (`Cue::Edges`), which is copied from real images of the other group
//!   (and every image not moved takes the band of another image of its
//!   own group, so that the seam a copied band leaves is on every image).
//! - `none`: the images as they are (the control fine-tune).
//!
//! The object painted or pasted is the detector's matched box grown to the
//! object's whole reach (`Reach`), since the detector's template may hold
//! only part of it.
//!
//! Where the verdict's evidence is where the model looks (an object whose
//! copies vary, with no template to match), the caller finds that region on
//! every training image with the model (`LookedAt::boxes`), and the same
//! two methods work on those boxes: each image of the flagged class is
//! taken to carry what the model looks at there.
use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use crate::config::ReviseMethod;
use crate::data::{index_tensor, PixelBox};
use crate::detect::carriers::{self, Carrier, Reach};
use crate::detect::global;
use crate::detect::verdict::Verdict;

/// The training images with the evidence neutralised, and what was done.
pub struct Neutralised {
    /// uint8 `[N, 3, S, S]`, in the order of the images given.
    pub images: Tensor,
    /// Images whose pixels were changed.
    pub changed: usize,
    /// Images that carry the found object (None for a global cue or `none`).
    pub carriers: Option<usize>,
    /// How far the object was found to reach beyond the box the detector
    /// matches (None for a global cue or `none`).
    pub reach: Option<Reach>,
}

/// `images` (uint8 `[N, 3, S, S]`, labels `labels`) with what `evidence`
/// found neutralised by `method`; `seed` draws the pastes of `augment`.
/// Where the evidence is where the model looks, `looked` holds that
/// region's box on each image (see the module).
pub fn neutralise(
    images: &Tensor,
    labels: &[i64],
    class_names: &[String],
    evidence: &Verdict,
    looked: Option<&[Option<PixelBox>]>,
    method: ReviseMethod,
    seed: u64,
) -> anyhow::Result<Neutralised> {
    let _guard = tch::no_grad_guard();
    if method == ReviseMethod::None {
        return Ok(Neutralised {
            images: images.shallow_clone(),
            changed: 0,
            carriers: None,
            reach: None,
        });
    }
    let Some(class_name) = evidence.class.as_deref() else {
        bail!("the verdict names no class: there is nothing to neutralise");
    };
    let Some(class) = class_names.iter().position(|c| c == class_name) else {
        bail!(
            "the verdict's class '{class_name}' is not one of the data's classes ({})",
            class_names.join(", ")
        );
    };
    if let Some(cue) = evidence.global_transform {
        return Ok(neutralise_global(
            images,
            labels,
            class as i64,
            cue,
            method,
            seed,
        ));
    }
    if evidence.source == crate::detect::Source::Sensitivity {
        let Some(boxes) = looked else {
            bail!(
                "the verdict's evidence is {}, but where the model looks was not found on the \
                 training images",
                evidence.evidence()
            );
        };
        anyhow::ensure!(
            boxes.len() == labels.len(),
            "where the model looks was found on {} images, but there are {} training images",
            boxes.len(),
            labels.len()
        );
        return neutralise_looked(images, labels, class as i64, boxes, method, seed);
    }
    let Some(object) = &evidence.object else {
        bail!(
            "the verdict's evidence ({}) has no object the detector can find in the training \
             images; re-audit with this version of nave-lab",
            evidence.evidence_short()
        );
    };
    neutralise_object(images, labels, class as i64, object, method, seed)
}

/// A local object painted over (`mask`) or pasted onto the other classes
/// (`augment`), where the detector's match finds it.
fn neutralise_object(
    images: &Tensor,
    labels: &[i64],
    class: i64,
    object: &carriers::ObjectMatch,
    method: ReviseMethod,
    seed: u64,
) -> anyhow::Result<Neutralised> {
    let found = carriers::score(object, images).context("finding the object's carriers")?;
    let size = images.size()[2];
    let mut pixels = Vec::<u8>::try_from(images.contiguous().flatten(0, -1))?;
    // The whole object, not only the part the detector's box matches.
    let reach = Reach::of(&pixels, size, &found);
    Ok(neutralise_found(
        images,
        &mut pixels,
        labels,
        class,
        &found,
        Some(reach),
        method,
        seed,
    ))
}

/// Where the model looks (`boxes`, one per image), painted over (`mask`)
/// or pasted onto the other classes (`augment`): every image of the class
/// with a region counts as carrying what the model looks at there.
fn neutralise_looked(
    images: &Tensor,
    labels: &[i64],
    class: i64,
    boxes: &[Option<PixelBox>],
    method: ReviseMethod,
    seed: u64,
) -> anyhow::Result<Neutralised> {
    let mut pixels = Vec::<u8>::try_from(images.contiguous().flatten(0, -1))?;
    let found: Vec<Carrier> = boxes
        .iter()
        .enumerate()
        .filter_map(|(index, b)| {
            b.map(|region| Carrier {
                index,
                likeness: 1.0,
                region,
                carries: labels[index] == class,
            })
        })
        .collect();
    Ok(neutralise_found(
        images,
        &mut pixels,
        labels,
        class,
        &found,
        None,
        method,
        seed,
    ))
}

/// `pixels` (flat, of `images`' shape) with the `found` places painted or
/// pasted (`paint_or_paste`), each box grown by the object's `reach` (none
/// where the model looks: its region is already the whole of what it
/// reads) and a margin.
#[allow(clippy::too_many_arguments)]
fn neutralise_found(
    images: &Tensor,
    pixels: &mut [u8],
    labels: &[i64],
    class: i64,
    found: &[Carrier],
    reach: Option<Reach>,
    method: ReviseMethod,
    seed: u64,
) -> Neutralised {
    let size = images.size()[2];
    let place = Place {
        reach: reach.unwrap_or_default(),
        size,
    };
    let changed = paint_or_paste(pixels, size, labels, class, found, &place, method, seed);
    Neutralised {
        images: Tensor::from_slice(pixels).view_(images.size()),
        changed,
        carriers: Some(found.iter().filter(|c| c.carries).count()),
        reach,
    }
}

/// Where a found object is painted or pasted: the matched box grown by the
/// object's `reach`, with a margin (`around`), in a `size` image.
struct Place {
    reach: Reach,
    size: i64,
}

impl Place {
    /// The box painted or pasted for carrier `c`.
    fn whole(&self, c: &Carrier) -> PixelBox {
        clipped(around(self.reach.grow(c.region)), self.size)
    }

    /// How wide its margin is: a pasted copy fades in over it.
    fn fade(&self, c: &Carrier) -> i64 {
        margin(self.reach.grow(c.region))
    }
}

/// The found places (`found`, the box `whole` of each) painted over in
/// every image (`mask`), or (`augment`) painted over on a random half of
/// each class's images and pasted onto the other classes' images that lack
/// it until they carry it as often. Returns how many images changed.
#[allow(clippy::too_many_arguments)]
fn paint_or_paste(
    pixels: &mut [u8],
    size: i64,
    labels: &[i64],
    class: i64,
    found: &[Carrier],
    place: &Place,
    method: ReviseMethod,
    seed: u64,
) -> usize {
    let whole = |c: &Carrier| place.whole(c);
    let at: std::collections::HashMap<usize, &Carrier> =
        found.iter().map(|c| (c.index, c)).collect();
    match method {
        ReviseMethod::Mask => {
            // Every image, carrier or not, is painted where it matches the
            // object best: a carrier the cut missed loses its object too,
            // and the painted patch, in every class, tells none apart.
            for c in found {
                fill_from_border(image_mut(pixels, c.index, size), size, whole(c));
            }
            found.len()
        }
        ReviseMethod::Augment => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5245_5649_5345);
            // Both ways: a random half of the class's images lose the
            // object (painted over where it matches best, so a carrier
            // the cut missed among them too), and the other classes gain
            // it until they carry it as often as the class now does.
            let mut members: Vec<usize> =
                (0..labels.len()).filter(|&i| labels[i] == class).collect();
            members.shuffle(&mut rng);
            let painted: std::collections::BTreeSet<usize> =
                members[..members.len() / 2].iter().copied().collect();
            let mut changed = 0;
            for i in &painted {
                if let Some(c) = at.get(i) {
                    fill_from_border(image_mut(pixels, *i, size), size, whole(c));
                    changed += 1;
                }
            }
            let kept: Vec<&Carrier> = found
                .iter()
                .filter(|c| c.carries && labels[c.index] == class && !painted.contains(&c.index))
                .collect();
            let target = kept.len() as f64 / members.len().max(1) as f64;
            let pasted = paste_on_others(
                pixels, labels, class, found, &kept, target, size, place, &mut rng,
            );
            // The painted patch is put on the other classes as often as on
            // the class, where each image matches the object best, on
            // images not pasted on: painted only in the class, a patch
            // would tell it apart as the object did.
            let share = painted.len() as f64 / members.len().max(1) as f64;
            let mut others: Vec<&Carrier> = found
                .iter()
                .filter(|c| labels[c.index] != class && pasted.binary_search(&c.index).is_err())
                .collect();
            others.shuffle(&mut rng);
            let others_painted = (share * others.len() as f64).round() as usize;
            for c in &others[..others_painted] {
                fill_from_border(image_mut(pixels, c.index, size), size, whole(c));
            }
            changed + pasted.len() + others_painted
        }
        ReviseMethod::None => 0,
    }
}

/// A global cue taken off the class (`mask`: the other classes' looks put
/// on all its images), or made uninformative (`augment`: put on a random
/// half of the other classes' images, and taken off a random half of the
/// class's, so that both carry it about as often and the model sees each
/// class with and without it).
fn neutralise_global(
    images: &Tensor,
    labels: &[i64],
    class: i64,
    cue: global::Cue,
    method: ReviseMethod,
    seed: u64,
) -> Neutralised {
    let (members, others): (Vec<usize>, Vec<usize>) =
        (0..labels.len()).partition(|&i| labels[i] == class);
    let mut out = images.copy();
    if members.is_empty() || others.is_empty() {
        return Neutralised {
            images: out,
            changed: 0,
            carriers: None,
            reach: None,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x474c_4f42);
    let mut half = |group: &[usize]| -> Vec<usize> {
        let mut picked: Vec<usize> = group.to_vec();
        picked.shuffle(&mut rng);
        picked.truncate(group.len().div_ceil(2));
        picked.sort_unstable();
        picked
    };
    // (the group whose looks are given, the group moved, the images moved)
    let mut moves = match method {
        ReviseMethod::Augment => {
            let (on, off) = (half(&others), half(&members));
            vec![(&members, &others, on), (&others, &members, off)]
        }
        _ => vec![(&others, &members, members.clone())],
    };
    if cue == global::Cue::Edges {
        // A frame copied from another image leaves a seam where the band
        // ends, on the moved images only: a model tells moved from unmoved
        // by it, and with the frame the seam tells the classes apart again
        // (a cxr-border revision kept a gap of 0.26 at training accuracy
        // 1.0). Every other image takes the band of another image of its
        // own group, so that every image has a seam and none says more.
        let stays = |group: &Vec<usize>, moved: &[usize]| -> Vec<usize> {
            group
                .iter()
                .copied()
                .filter(|i| moved.binary_search(i).is_err())
                .collect()
        };
        let (members_stay, others_stay) = match method {
            ReviseMethod::Augment => (stays(&members, &moves[1].2), stays(&others, &moves[0].2)),
            _ => (Vec::new(), others.clone()),
        };
        moves.push((&members, &members, members_stay));
        moves.push((&others, &others, others_stay));
    }
    let mut changed = 0;
    for (from, group, targets) in moves {
        if targets.is_empty() {
            continue;
        }
        let idx = index_tensor(&targets);
        let moved = move_looks(images, from, group, &targets, cue, &mut rng);
        let _ = out.index_copy_(0, &idx, &moved);
        changed += targets.len();
    }
    Neutralised {
        images: out,
        changed,
        carriers: None,
        reach: None,
    }
}

/// The `images` at `targets` (of `group`) given the looks of `from` for `cue`.
fn move_looks(
    images: &Tensor,
    from: &[usize],
    group: &[usize],
    targets: &[usize],
    cue: global::Cue,
    rng: &mut ChaCha8Rng,
) -> Tensor {
    let moved = images.index_select(0, &index_tensor(targets));
    match cue {
        // A frame is copied as it is, from a random image of `from`: the
        // mean frame the transform adds is not the frame any one image
        // has, and a model tells the two apart.
        global::Cue::Edges => {
            // Another image than the target itself where the group has one.
            let picks: Vec<usize> = targets
                .iter()
                .map(|&t| loop {
                    let pick = from[rng.gen_range(0..from.len())];
                    if pick != t || from.len() < 2 {
                        break pick;
                    }
                })
                .collect();
            let band = global::edge_band(images.size()[2]).to_kind(tch::Kind::Bool);
            moved.where_self(
                &band.logical_not(),
                &images.index_select(0, &index_tensor(&picks)),
            )
        }
        _ => global::apply_cue(images, from, group, cue, &moved),
    }
}

/// The object's box with a margin: the detector's box is where the
/// object's high-pass template matches, and a part of the object left out
/// (an unpainted stroke, a pasted copy cut short) is a cue of its own.
fn around(region: PixelBox) -> PixelBox {
    region.dilated(margin(region))
}

/// The margin `around` adds to `region` on each side.
fn margin(region: PixelBox) -> i64 {
    (region.w.max(region.h) / 4).max(1)
}

/// The flat pixels of image `i` (`3 * S * S` bytes, channel-major).
fn image_mut(pixels: &mut [u8], i: usize, size: i64) -> &mut [u8] {
    let n = 3 * (size * size) as usize;
    &mut pixels[i * n..(i + 1) * n]
}

/// `b` cut to the image (possibly empty).
fn clipped(b: PixelBox, size: i64) -> PixelBox {
    let (x0, y0) = (b.x.clamp(0, size), b.y.clamp(0, size));
    let (x1, y1) = ((b.x + b.w).clamp(0, size), (b.y + b.h).clamp(0, size));
    PixelBox {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    }
}

/// Fills box `b` of one image from the pixels just outside it: each pixel
/// the mean of the border pixels on its row (left, right) and column (top,
/// bottom), each weighted by the inverse of its distance. A side at the
/// image's edge has no border and is left out; a box that covers the whole
/// image is filled with mid-grey.
fn fill_from_border(image: &mut [u8], size: i64, b: PixelBox) {
    if b.w <= 0 || b.h <= 0 {
        return;
    }
    let s = size as usize;
    let at = |c: usize, y: i64, x: i64| c * s * s + y as usize * s + x as usize;
    for c in 0..3 {
        let plane: Vec<u8> = image[c * s * s..(c + 1) * s * s].to_vec();
        let value = |y: i64, x: i64| f64::from(plane[y as usize * s + x as usize]);
        for y in b.y..b.y + b.h {
            for x in b.x..b.x + b.w {
                let mut sum = 0.0;
                let mut weight = 0.0;
                let mut add = |inside: bool, py: i64, px: i64, dist: i64| {
                    if inside {
                        let w = 1.0 / dist as f64;
                        sum += w * value(py, px);
                        weight += w;
                    }
                };
                add(b.x > 0, y, b.x - 1, x - b.x + 1);
                add(b.x + b.w < size, y, b.x + b.w, b.x + b.w - x);
                add(b.y > 0, b.y - 1, x, y - b.y + 1);
                add(b.y + b.h < size, b.y + b.h, x, b.y + b.h - y);
                let v = if weight > 0.0 { sum / weight } else { 128.0 };
                image[at(c, y, x)] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// The object pasted onto the other classes' images that lack it, until
/// each class carries it at the `target` rate: the object's whole box
/// (`place.whole`), cut from a random one of `sources` where it was found
/// there, at that place, fading into the image over the margin (a hard
/// edge where the copy ends would be on the other classes only, and tell
/// them apart). Returns the images pasted on, in order.
#[allow(clippy::too_many_arguments)]
fn paste_on_others(
    pixels: &mut [u8],
    labels: &[i64],
    class: i64,
    found: &[Carrier],
    sources: &[&Carrier],
    target: f64,
    size: i64,
    place: &Place,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    if sources.is_empty() {
        return Vec::new();
    }
    let rate = |k: i64| {
        let members: Vec<&Carrier> = found.iter().filter(|c| labels[c.index] == k).collect();
        members.iter().filter(|c| c.carries).count() as f64 / members.len().max(1) as f64
    };
    let mut pasted = Vec::new();
    let others: std::collections::BTreeSet<i64> =
        labels.iter().copied().filter(|&k| k != class).collect();
    for k in others {
        let have = rate(k);
        // Of the images that lack it, this share gets it: then the class
        // carries it at the target rate, in expectation.
        let share = if have >= 1.0 {
            0.0
        } else {
            ((target - have) / (1.0 - have)).clamp(0.0, 1.0)
        };
        for c in found.iter().filter(|c| labels[c.index] == k && !c.carries) {
            if rng.gen::<f64>() >= share {
                continue;
            }
            let source = sources[rng.gen_range(0..sources.len())];
            let (b, fade) = (place.whole(source), place.fade(source));
            paste_faded(pixels, size, source.index, c.index, b, fade);
            pasted.push(c.index);
        }
    }
    pasted.sort_unstable();
    pasted
}

/// Box `b` of image `from` pasted onto image `to` (flat uint8 `[N, 3, S, S]`
/// `pixels`), at full weight from `fade` pixels inside the box's edge
/// inwards and fading to 1 / (fade + 1) of it at the edge. A side on the
/// image's border does not fade: the box was clipped there, its margin is
/// gone, and fading would thin the object itself (an object on the edge of
/// a radiograph), on the pasted copies only.
fn paste_faded(pixels: &mut [u8], size: i64, from: usize, to: usize, b: PixelBox, fade: i64) {
    let s = size as usize;
    let n = 3 * s * s;
    // The distance from a side, or none where the side is the image's border.
    let side = |d: i64, on_border: bool| if on_border { i64::MAX } else { d };
    for ch in 0..3 {
        for y in b.y..b.y + b.h {
            let row = ch * s * s + y as usize * s;
            for x in b.x..b.x + b.w {
                let from_edge = side(x - b.x, b.x <= 0)
                    .min(side(b.x + b.w - 1 - x, b.x + b.w >= size))
                    .min(side(y - b.y, b.y <= 0))
                    .min(side(b.y + b.h - 1 - y, b.y + b.h >= size));
                let alpha = ((from_edge + 1) as f32 / (fade + 1) as f32).min(1.0);
                let (src, dst) = (from * n + row + x as usize, to * n + row + x as usize);
                let blended = alpha * pixels[src] as f32 + (1.0 - alpha) * pixels[dst] as f32;
                pixels[dst] = blended.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::carriers::ObjectMatch;
    use tch::Kind;

    /// `n` seeded noisy grey images (90-130) of `size` px, and their labels:
    /// even ones NORMAL (0), odd PNEUMONIA (1).
    fn noisy(seed: i64, n: i64, size: i64) -> (Tensor, Vec<i64>) {
        tch::manual_seed(seed);
        let images = (Tensor::rand([n, 1, size, size], (Kind::Float, tch::Device::Cpu)) * 40.0
            + 90.0)
            .to_kind(Kind::Uint8)
            .repeat([1, 3, 1, 1]);
        (images, (0..n).map(|i| i % 2).collect())
    }

    /// Where image `i` of `noisy` carries its object: a place that moves.
    fn place(i: i64) -> (i64, i64) {
        (4 + (i % 5) * 3, 6 + (i % 3) * 4)
    }

    /// 24 noisy grey images; a bright cross on every NORMAL image.
    fn crossed() -> (Tensor, Vec<i64>, Vec<PixelBox>) {
        let (images, labels) = noisy(0, 24, 32);
        let mut boxes = Vec::new();
        for i in (0..24).step_by(2) {
            let (x, y) = place(i);
            let img = images.get(i);
            let _ = img.narrow(1, y + 3, 2).narrow(2, x, 8).fill_(250);
            let _ = img.narrow(1, y, 8).narrow(2, x + 3, 2).fill_(250);
            boxes.push(PixelBox::square(x, y, 8));
        }
        (images, labels, boxes)
    }

    fn evidence(images: &Tensor) -> Verdict {
        Verdict {
            shortcut_score: 0.5,
            threshold: 0.028,
            flagged: true,
            class: Some("NORMAL".into()),
            cluster: Some(1),
            source: crate::detect::Source::Cluster,
            lift: 0.6,
            control: 0.1,
            stereotypy: 1.0,
            suspect_boxes: vec![],
            global_cue: None,
            global_transform: None,
            object: Some(ObjectMatch::cut_from_first(images, 2, 4, 0.6)),
            looked: None,
        }
    }

    fn names() -> Vec<String> {
        vec!["NORMAL".into(), "PNEUMONIA".into()]
    }

    /// The PNEUMONIA (odd) images of `out` changed without showing the
    /// object: painted where they match best. Asserts they are half of the
    /// `gained` images' complement (the share painted of NORMAL), and
    /// returns how many.
    fn painted_pneumonia(
        images: &Tensor,
        out: &Tensor,
        shows: impl Fn(i64) -> bool,
        gained: usize,
    ) -> usize {
        let painted = (1..24i64)
            .step_by(2)
            .filter(|&i| !shows(i) && !out.get(i).equal(&images.get(i)))
            .count();
        assert_eq!(painted, ((12 - gained) as f64 / 2.0).round() as usize);
        painted
    }

    fn bright(images: &Tensor, i: i64) -> i64 {
        images.get(i).ge(240).sum(Kind::Int64).int64_value(&[])
    }

    #[test]
    fn mask_paints_over_the_object_where_it_is_and_only_there() {
        let (images, labels, boxes) = crossed();
        let out = neutralise(
            &images,
            &labels,
            &names(),
            &evidence(&images),
            None,
            ReviseMethod::Mask,
            0,
        )
        .unwrap();
        assert_eq!(out.carriers, Some(12));
        assert_eq!(out.changed, 24);
        for i in 0..24i64 {
            assert_eq!(bright(&out.images, i), 0, "image {i} still shows the cross");
        }
        // Outside the box and its margin (a quarter of its side) the pixels are untouched.
        let b = boxes[3];
        let (i, x, y) = (6, b.x, b.y);
        let changed = out.images.get(i).ne_tensor(&images.get(i));
        let _ = changed.narrow(1, y - 2, 12).narrow(2, x - 2, 12).fill_(0);
        assert_eq!(changed.sum(Kind::Int64).int64_value(&[]), 0);
        // The fill is of the image's grey, not a flat black or white hole.
        let filled = out
            .images
            .get(i)
            .narrow(1, y, 8)
            .narrow(2, x, 8)
            .to_kind(Kind::Float);
        let mean = filled.mean(Kind::Float).double_value(&[]);
        assert!((90.0..=130.0).contains(&mean), "{mean}");
    }

    /// 24 noisy images as in `crossed`, a bright 16 x 8 bar on every NORMAL
    /// image at a place that moves, and a match that holds only the bar's
    /// left half (the detector's window clipped it).
    fn half_matched_bar() -> (Tensor, Vec<i64>, Verdict) {
        let (images, labels) = noisy(1, 24, 40);
        for i in (0..24).step_by(2) {
            let (x, y) = place(i);
            let _ = images.get(i).narrow(1, y, 8).narrow(2, x, 16).fill_(250);
        }
        let mut verdict = evidence(&images);
        // Image 0's bar is at (4, 6): the window's inner 8 x 8 box is its left half.
        verdict.object = Some(ObjectMatch::cut_from_first(&images, 2, 4, 0.6));
        (images, labels, verdict)
    }

    #[test]
    fn the_whole_object_is_painted_when_the_match_holds_only_part_of_it() {
        let (images, labels, verdict) = half_matched_bar();
        let found = carriers::score(verdict.object.as_ref().unwrap(), &images).unwrap();
        assert_eq!(found.iter().filter(|c| c.carries).count(), 12);
        for c in found.iter().filter(|c| c.carries) {
            assert_eq!(c.region.w, 8, "the match holds half the bar");
        }
        let pixels = Vec::<u8>::try_from(images.flatten(0, -1)).unwrap();
        let reach = Reach::of(&pixels, 40, &found);
        assert_eq!(
            reach,
            Reach {
                left: 0,
                top: 0,
                right: 8,
                bottom: 0
            }
        );
        for method in [ReviseMethod::Mask, ReviseMethod::Augment] {
            let out = neutralise(&images, &labels, &names(), &verdict, None, method, 3).unwrap();
            assert_eq!(out.reach, Some(reach));
            // Every painted image loses the whole bar, not its left half.
            for i in (0..24i64).step_by(2) {
                let left = bright(&out.images, i);
                let untouched = out.images.get(i).equal(&images.get(i));
                assert!(
                    left == 0 || (method == ReviseMethod::Augment && untouched),
                    "{method:?}: image {i} keeps {left} bright values"
                );
            }
            // augment pastes the whole bar: 16 x 8 bright on the others that gain it.
            if method == ReviseMethod::Augment {
                for i in (1..24i64).step_by(2) {
                    let b = bright(&out.images, i);
                    assert!(b == 0 || b == 3 * 16 * 8, "image {i}: {b} bright values");
                }
            }
        }
    }

    #[test]
    fn augment_takes_the_object_off_half_the_class_and_puts_it_on_the_others_as_often() {
        let (images, labels, _) = crossed();
        let e = evidence(&images);
        let augment = || {
            neutralise(
                &images,
                &labels,
                &names(),
                &e,
                None,
                ReviseMethod::Augment,
                7,
            )
            .unwrap()
        };
        let out = augment();
        let shows = |i: i64| bright(&out.images, i) >= 20;
        // Half the NORMAL images (all carried it) lose it, the rest keep
        // it untouched.
        let normal: Vec<i64> = (0..24).step_by(2).collect();
        let lost = normal.iter().filter(|&&i| !shows(i)).count();
        assert_eq!(lost, 6);
        for &i in normal.iter().filter(|&&i| shows(i)) {
            assert!(out.images.get(i).equal(&images.get(i)), "image {i} changed");
        }
        // PNEUMONIA images gain it at the rate NORMAL now has (a half, in
        // expectation: a seeded draw).
        let gained = (1..24i64).step_by(2).filter(|&i| shows(i)).count();
        assert!((3..=9).contains(&gained), "{gained} of 12 gained it");
        // Of the PNEUMONIA images that did not gain it, the same share as
        // of NORMAL (a half) is painted where it matches best.
        let painted = painted_pneumonia(&images, &out.images, shows, gained);
        assert_eq!(out.changed, lost + gained + painted);
        let found = carriers::score(e.object.as_ref().unwrap(), &out.images).unwrap();
        let carry = |parity: usize| {
            found
                .iter()
                .filter(|c| c.index % 2 == parity && c.carries)
                .count()
        };
        assert_eq!((carry(0), carry(1)), (6, gained));
        // Seeded: the same pastes again.
        let again = augment();
        assert!(again.images.equal(&out.images));
        // The control changes nothing.
        let none = neutralise(&images, &labels, &names(), &e, None, ReviseMethod::None, 7).unwrap();
        assert!(none.images.equal(&images) && none.changed == 0);
    }

    #[test]
    fn a_global_tint_is_put_on_the_others_or_taken_off_the_class() {
        let (images, labels, _) = crossed();
        // NORMAL images tinted red (saturating at white).
        let tinted = images.to_kind(Kind::Int16);
        for i in (0..24i64).step_by(2) {
            let _ = tinted.get(i).get(0).g_add_scalar_(40);
        }
        let tinted = tinted.clamp(0, 255).to_kind(Kind::Uint8);
        let mut e = evidence(&images);
        e.object = None;
        e.global_transform = Some(global::Cue::Shift);
        let red_minus_green = |t: &Tensor, parity: i64| {
            let idx: Vec<usize> = (0..24).filter(|i| i % 2 == parity as usize).collect();
            let x = t.index_select(0, &index_tensor(&idx)).to_kind(Kind::Float);
            (x.select(1, 0) - x.select(1, 1))
                .mean(Kind::Float)
                .double_value(&[])
        };
        assert!(red_minus_green(&tinted, 0) > 30.0 && red_minus_green(&tinted, 1).abs() < 1.0);
        let aug = neutralise(
            &tinted,
            &labels,
            &names(),
            &e,
            None,
            ReviseMethod::Augment,
            0,
        )
        .unwrap();
        // Half of each class tinted: both at about half the tint.
        assert!(
            (15.0..25.0).contains(&red_minus_green(&aug.images, 1))
                && (15.0..25.0).contains(&red_minus_green(&aug.images, 0)),
            "{} {}",
            red_minus_green(&aug.images, 1),
            red_minus_green(&aug.images, 0)
        );
        let mask = neutralise(&tinted, &labels, &names(), &e, None, ReviseMethod::Mask, 0).unwrap();
        assert!(
            red_minus_green(&mask.images, 0).abs() < 5.0,
            "{}",
            red_minus_green(&mask.images, 0)
        );
        assert_eq!((aug.changed, mask.changed), (12, 12));
    }

    #[test]
    fn a_frame_is_moved_with_every_image_given_a_band_so_no_seam_tells_the_classes_apart() {
        // A black 2 px frame on every NORMAL image of 24 noisy ones.
        let (images, labels) = noisy(3, 24, 32);
        for i in (0..24).step_by(2) {
            let img = images.get(i);
            for (dim, start) in [(1, 0), (1, 30), (2, 0), (2, 30)] {
                let _ = img.narrow(dim, start, 2).fill_(0);
            }
        }
        let mut e = evidence(&images);
        e.object = None;
        e.global_transform = Some(global::Cue::Edges);
        let framed = |t: &Tensor, i: i64| t.get(i).narrow(1, 0, 2).max().int64_value(&[]) == 0;
        let band = global::edge_band(32).to_kind(Kind::Bool);
        let kept_own_band = |t: &Tensor, i: i64| {
            t.get(i)
                .masked_select(&band)
                .equal(&images.get(i).masked_select(&band))
        };
        for method in [ReviseMethod::Augment, ReviseMethod::Mask] {
            let out = neutralise(&images, &labels, &names(), &e, None, method, 0).unwrap();
            let framed_in = |parity: i64| {
                (0..24)
                    .filter(|i| i % 2 == parity && framed(&out.images, *i))
                    .count()
            };
            match method {
                // Half of each class framed.
                ReviseMethod::Augment => assert_eq!((framed_in(0), framed_in(1)), (6, 6)),
                _ => assert_eq!((framed_in(0), framed_in(1)), (0, 0)),
            }
            // No image keeps its own band, so the seam where a copied band
            // ends is on every image, not on the moved ones only.
            assert!(
                (0..24).all(|i| !kept_own_band(&out.images, i)),
                "{method:?}"
            );
            assert_eq!(out.changed, 24);
            // Away from the band, every image is its own.
            let inner = band.logical_not();
            assert!((0..24).all(|i| out
                .images
                .get(i)
                .masked_select(&inner)
                .equal(&images.get(i).masked_select(&inner))));
        }
    }

    #[test]
    fn a_pasted_copy_fades_into_the_image_over_its_margin() {
        // Image 0 all 200, image 1 all 100, 16 px; a 10 x 10 box at (3, 3)
        // pasted from 0 onto 1 with a fade of 2.
        let s = 16usize;
        let mut pixels = vec![200u8; 3 * s * s];
        pixels.extend(vec![100u8; 3 * s * s]);
        paste_faded(&mut pixels, 16, 0, 1, PixelBox::square(3, 3, 10), 2);
        let at = |ch: usize, y: usize, x: usize| pixels[3 * s * s + ch * s * s + y * s + x];
        for ch in 0..3 {
            assert_eq!(at(ch, 2, 5), 100, "outside the box, untouched");
            assert_eq!(at(ch, 3, 5), 133, "the edge: a third of the copy");
            assert_eq!(at(ch, 4, 5), 167, "one in: two thirds");
            assert_eq!(at(ch, 5, 5), 200, "the fade's width in: the copy");
            assert_eq!(at(ch, 8, 8), 200);
            assert_eq!(at(ch, 12, 12), 133, "the far corner");
            assert_eq!(at(ch, 13, 12), 100);
        }
        // The source is left as it was.
        assert!(pixels[..3 * s * s].iter().all(|&v| v == 200));
        // A box on the image's left border (clipped there) does not fade
        // on that side: the object at the edge is pasted whole.
        let mut pixels = vec![200u8; 3 * s * s];
        pixels.extend(vec![100u8; 3 * s * s]);
        paste_faded(&mut pixels, 16, 0, 1, PixelBox::square(0, 3, 10), 2);
        let at = |y: usize, x: usize| pixels[3 * s * s + y * s + x];
        assert_eq!(at(6, 0), 200, "the border side: the copy");
        assert_eq!(at(6, 9), 133, "the inner side still fades");
        assert_eq!(at(3, 5), 133, "so does the top");
    }

    #[test]
    fn a_verdict_without_evidence_is_refused_with_the_reason() {
        let (images, labels, _) = crossed();
        let mut e = evidence(&images);
        e.object = None;
        let err = neutralise(&images, &labels, &names(), &e, None, ReviseMethod::Mask, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no object"), "{err}");
        e.class = Some("CAT".into());
        let err = neutralise(&images, &labels, &names(), &e, None, ReviseMethod::Mask, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("'CAT'"), "{err}");
    }

    /// A verdict whose evidence is where the model looks: no object; the
    /// boxes come with it (here, the crosses' own boxes on NORMAL images,
    /// and a place with nothing in it on PNEUMONIA ones).
    fn looked_evidence(images: &Tensor) -> Verdict {
        let mut e = evidence(images);
        e.object = None;
        e.source = crate::detect::Source::Sensitivity;
        e
    }

    fn looked_boxes(boxes: &[PixelBox]) -> Vec<Option<PixelBox>> {
        (0..24)
            .map(|i| {
                Some(if i % 2 == 0 {
                    boxes[i / 2]
                } else {
                    PixelBox::square(20, 20, 8)
                })
            })
            .collect()
    }

    #[test]
    fn where_the_model_looks_is_painted_over_or_moved_to_the_other_class() {
        let (images, labels, boxes) = crossed();
        let e = looked_evidence(&images);
        let looked = looked_boxes(&boxes);
        let mask = neutralise(
            &images,
            &labels,
            &names(),
            &e,
            Some(&looked),
            ReviseMethod::Mask,
            0,
        )
        .unwrap();
        assert_eq!((mask.carriers, mask.changed), (Some(12), 24));
        for i in 0..24i64 {
            assert_eq!(
                bright(&mask.images, i),
                0,
                "image {i} still shows the cross"
            );
        }
        let aug = neutralise(
            &images,
            &labels,
            &names(),
            &e,
            Some(&looked),
            ReviseMethod::Augment,
            7,
        )
        .unwrap();
        let shows = |i: i64| bright(&aug.images, i) >= 20;
        let lost = (0..24i64).step_by(2).filter(|&i| !shows(i)).count();
        let gained = (1..24i64).step_by(2).filter(|&i| shows(i)).count();
        assert_eq!(lost, 6, "half the class loses it");
        assert!((3..=9).contains(&gained), "{gained} of 12 gained it");
        let painted = painted_pneumonia(&images, &aug.images, shows, gained);
        assert_eq!(aug.changed, lost + gained + painted);
        // Without the boxes, or with boxes for other images, it is refused.
        let err = neutralise(&images, &labels, &names(), &e, None, ReviseMethod::Mask, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("where the model looks"), "{err}");
        let err = neutralise(
            &images,
            &labels,
            &names(),
            &e,
            Some(&looked[..3]),
            ReviseMethod::Mask,
            0,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("3 images"), "{err}");
    }
}
