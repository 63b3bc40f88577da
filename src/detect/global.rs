//! Global cues: a shortcut with no place of its own (a scanner's tint, a
//! frame, a noise texture, a blur level) has no small recurring cluster for
//! the NAVE-guided search to find. It shows instead in what the images of
//! one class have in common everywhere: their mean picture, and their mean
//! spectrum.
//!
//! Each class's cue is read from the training images as transforms that
//! carry what sets the class apart from the others and nothing of any one
//! image. Per channel, the affine map that gives the other classes' pixels
//! the class's mean and spread (`Cue::Shift`: a tint blended over the image,
//! a brightness or contrast change). From the difference of the class's mean
//! image from the others', less its mean per channel: its colour
//! (`Cue::Colour`), and its grey level along the edges (`Cue::Edges`: a
//! frame). The grey level of the
//! rest inside the image is left out: that is where what the classes really
//! differ in lies (an opacity, averaged over its places), and a fixed local
//! object there is the NAVE-guided search's to find. From the ratio of the
//! class's mean amplitude spectrum to the others', in the outer half of the
//! frequencies: `Cue::Texture` (noise, grain, blur). Applied to the other
//! classes' images, does any move the model towards the class?
//!
//! The control is the same transform built from a split of the same images
//! that ignores the class (a fixed shuffle), scaled to the same size: a model
//! moved by any change of that size moves as much with it, and one moved by
//! what the class holds moves only with the class's own.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::{class_probability, sample, Evidence, Transplant};
use crate::data::index_tensor;

/// Training images per class that the means are taken over.
const MEAN_OVER: usize = 512;

/// The largest ratio a texture transform scales one frequency by (and the
/// smallest, its inverse): a frequency the class all but lacks would
/// otherwise be blown up from rounding noise.
const MAX_GAIN: f64 = 4.0;

/// Which of the four transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cue {
    /// Per channel, the affine map that gives the others' pixels the
    /// class's mean and spread (a tint blended over the image, a brightness
    /// or contrast change).
    Shift,
    /// The difference of the class's mean image from the others', less its
    /// mean per channel (the shift has that): its colour (each pixel's
    /// difference less its grey level), added.
    Colour,
    /// The rest's grey level in a band along the image's edges, added.
    Edges,
    /// The others' fine detail (the outer half of the frequencies) scaled
    /// to the class's amplitude spectrum.
    Texture,
}

/// Every cue, in the order `Transforms::projections` gives them.
const CUES: [Cue; 4] = [Cue::Shift, Cue::Colour, Cue::Edges, Cue::Texture];

/// The share of the image's side that `Cue::Edges` covers on each side.
const EDGE_BAND: f64 = 0.1;

/// What a cue changes, in words a user reads (from the transform itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Looks {
    /// The same colour shift everywhere.
    Tint,
    /// The same brightness shift everywhere, without colour.
    Brightness,
    /// A change held at the image's edges.
    Border,
    /// A change at fixed places, neither everywhere nor at the edges.
    Pattern,
    /// More fine detail (noise, grain, sharpening).
    Noise,
    /// Less fine detail.
    Blur,
}

impl Looks {
    pub fn as_str(self) -> &'static str {
        match self {
            Looks::Tint => "tint",
            Looks::Brightness => "brightness",
            Looks::Border => "border",
            Looks::Pattern => "pattern",
            Looks::Noise => "noise",
            Looks::Blur => "blur",
        }
    }
}

/// One class's global cue and its test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GlobalCandidate {
    pub class: String,
    pub cue: Cue,
    pub looks: Looks,
    /// Mean gain of P(class) on the other classes' images with the cue
    /// applied, and with the class-blind control applied instead.
    pub lift: f64,
    pub control: f64,
    /// How well the cue alone tells the class's training images from the
    /// others', image by image: the AUROC of each image's projection on the
    /// cue, and the gap between the two groups' mean projections over their
    /// pooled standard deviation.
    #[serde(default)]
    pub auroc: f64,
    #[serde(default)]
    pub separation: f64,
}

/// The separation (see `GlobalCandidate::separation`) below which a cue
/// counts for nothing and above which it counts fully. What the classes
/// really differ in is spread: on the zoo's tuning runs the real X-rays'
/// edges separate their classes at 1.7-1.8 and the synthetic images'
/// texture at up to 5.6 (with no lift), a frame stamped on one class at
/// 9.8-10.7.
const SEPARATION: (f64, f64) = (2.5, 5.0);

impl GlobalCandidate {
    /// How much the cue looks like one thing stamped on every image of the
    /// class rather than what the class's content has in common: the global
    /// counterpart of a local candidate's stereotypy.
    pub fn weight(&self) -> f64 {
        super::ramp(self.separation, SEPARATION)
    }

    /// The lift over its control, times its weight: the candidate's score.
    pub fn score(&self) -> f64 {
        Transplant {
            lift: self.lift,
            control: self.control,
        }
        .weighted(self.weight())
    }
}

/// The uint8 `images` at `idx` as float `[B, 3, S, S]` chunks: every pass
/// over a group of training images reads them this way.
fn float_chunks<'a>(images: &'a Tensor, idx: &'a [usize]) -> impl Iterator<Item = Tensor> + 'a {
    idx.chunks(128).map(move |chunk| {
        images
            .index_select(0, &index_tensor(chunk))
            .to_kind(Kind::Float)
    })
}

/// The amplitude spectrum `[B, 3, S, S/2+1]` of float images.
fn amplitude(x: &Tensor) -> Tensor {
    x.fft_rfft2(None::<&[i64]>, [-2i64, -1].as_slice(), "backward")
        .abs()
}

/// Per image: each channel's mean (over 255) and log standard deviation,
/// `[B, 6]`, of float images.
fn image_statistics(x: &Tensor) -> Tensor {
    let x = x.flatten(2, -1);
    let mean = x.mean_dim([2i64].as_slice(), false, Kind::Float) / 255.0;
    let spread = (x.std_dim([2i64].as_slice(), false, false) + 1.0).log();
    Tensor::cat(&[mean, spread], 1)
}

/// What one pass over a group of training images gathers for the
/// transforms: sums of the images, of their amplitude spectra and of each
/// channel's pixels and squares, and each image's statistics.
struct GroupStats {
    images: f64,
    image_sum: Tensor,
    amplitude_sum: Tensor,
    pixels: f64,
    channel_sum: Tensor,
    channel_square: Tensor,
    per_image: Tensor,
}

impl GroupStats {
    fn of(images: &Tensor, idx: &[usize]) -> Self {
        let size = images.size();
        let (h, w) = (size[2], size[3]);
        let zeros = |shape: &[i64], kind| Tensor::zeros(shape, (kind, Device::Cpu));
        let mut g = GroupStats {
            images: idx.len() as f64,
            image_sum: zeros(&[3, h, w], Kind::Float),
            amplitude_sum: zeros(&[3, h, w / 2 + 1], Kind::Float),
            pixels: (idx.len() as i64 * h * w) as f64,
            channel_sum: zeros(&[3], Kind::Double),
            channel_square: zeros(&[3], Kind::Double),
            per_image: zeros(&[0, 6], Kind::Float),
        };
        let mut per_image = Vec::new();
        for x in float_chunks(images, idx) {
            g.image_sum += x.sum_dim_intlist(0i64, false, Kind::Float);
            g.amplitude_sum += amplitude(&x).sum_dim_intlist(0i64, false, Kind::Float);
            let channels = x.to_kind(Kind::Double).transpose(0, 1).flatten(1, -1);
            g.channel_sum += channels.sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
            g.channel_square +=
                channels
                    .square()
                    .sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
            per_image.push(image_statistics(&x));
        }
        if !per_image.is_empty() {
            g.per_image = Tensor::cat(&per_image, 0);
        }
        g
    }

    /// The groups taken together.
    fn merged(groups: &[&GroupStats]) -> Self {
        let sum = |f: fn(&GroupStats) -> &Tensor| {
            groups
                .iter()
                .map(|g| f(g).shallow_clone())
                .reduce(|a, b| a + b)
                .expect("at least one group")
        };
        GroupStats {
            images: groups.iter().map(|g| g.images).sum(),
            image_sum: sum(|g| &g.image_sum),
            amplitude_sum: sum(|g| &g.amplitude_sum),
            pixels: groups.iter().map(|g| g.pixels).sum(),
            channel_sum: sum(|g| &g.channel_sum),
            channel_square: sum(|g| &g.channel_square),
            per_image: Tensor::cat(&groups.iter().map(|g| &g.per_image).collect::<Vec<_>>(), 0),
        }
    }

    fn mean_image(&self) -> Tensor {
        &self.image_sum / self.images.max(1.0)
    }

    fn mean_amplitude(&self) -> Tensor {
        &self.amplitude_sum / self.images.max(1.0)
    }

    /// Per channel, over every pixel: the mean and the standard deviation,
    /// each `[3, 1, 1]`.
    fn channel_moments(&self) -> (Tensor, Tensor) {
        let n = self.pixels.max(1.0);
        let mean = &self.channel_sum / n;
        let var = (&self.channel_square / n - mean.square()).clamp_min(0.0);
        (
            mean.to_kind(Kind::Float).view([3, 1, 1]),
            var.sqrt().to_kind(Kind::Float).view([3, 1, 1]),
        )
    }
}

/// The four transforms that take the `others`' images towards the
/// `members'` (see `Cue`): the affine colour map, the colour and the edges
/// of the mean-image difference, and the spectral gain (log, zero outside
/// the outer half of the frequencies).
struct Transforms {
    /// Per channel `[3, 1, 1]`: the log of the gain and the offset (in grey
    /// levels over 255) of the affine map that gives the others' pixels the
    /// class's mean and spread.
    log_contrast: Tensor,
    offset: Tensor,
    /// The direction in per-image statistics (`image_statistics`) that
    /// best tells the class's images from the others' (`discriminant`).
    statistics: Tensor,
    colour: Tensor,
    edges: Tensor,
    log_gain: Tensor,
}

/// Fisher's discriminant direction `[F]` between the rows of `a` and `b`
/// (`[N, F]` each): the pooled covariance, made invertible by a small ridge,
/// solved against the difference of the means. (On grey images the colour
/// statistics do not vary at all: the ridge keeps them out.)
fn discriminant(a: &Tensor, b: &Tensor) -> Tensor {
    let centred = |t: &Tensor| {
        let t = t.to_kind(Kind::Double);
        let c = &t - t.mean_dim(0i64, true, Kind::Double);
        c.transpose(0, 1).matmul(&c) / (t.size()[0] as f64).max(1.0)
    };
    let cov = (centred(a) + centred(b)) / 2.0;
    let f = cov.size()[0];
    let ridge = (cov.trace().double_value(&[]) / f as f64).max(1e-12) * 1e-3;
    let cov = cov + Tensor::eye(f, (Kind::Double, Device::Cpu)) * ridge;
    let diff = (a.mean_dim(0i64, false, Kind::Float) - b.mean_dim(0i64, false, Kind::Float))
        .to_kind(Kind::Double)
        .unsqueeze(1);
    Tensor::linalg_solve(&cov, &diff, true)
        .squeeze_dim(1)
        .to_kind(Kind::Float)
}

/// The band along the edges of a `size` image, as a `[1, S, S]` float mask:
/// where `Cue::Edges` acts.
pub fn edge_band(size: i64) -> Tensor {
    let band = ((size as f64 * EDGE_BAND).round() as i64).max(1);
    let mask = Tensor::ones([1, size, size], (Kind::Float, Device::Cpu));
    let inner = (size - 2 * band).max(0);
    let _ = mask
        .narrow(1, band, inner)
        .narrow(2, band, inner)
        .fill_(0.0);
    mask
}

/// The outer half of the frequencies of a `size` image's `rfft2`, as a
/// `[1, S, S/2+1]` bool mask (the rows' frequencies wrap around).
fn high_frequencies(size: i64) -> Tensor {
    let (h, w) = (size, size / 2 + 1);
    let fy = Tensor::arange(h, (Kind::Int64, Device::Cpu));
    let fy = fy.minimum(&(-&fy + h)).view([h, 1]);
    let fx = Tensor::arange(w, (Kind::Int64, Device::Cpu)).view([1, w]);
    fy.maximum(&fx).ge(h / 4).unsqueeze(0)
}

impl Transforms {
    /// The transforms between the uint8 `images` at `members` and those at
    /// `others`.
    fn between(images: &Tensor, members: &[usize], others: &[usize]) -> Self {
        Self::from_stats(
            &GroupStats::of(images, members),
            &GroupStats::of(images, others),
        )
    }

    /// The transforms that take the group `o` towards the group `m`.
    fn from_stats(m: &GroupStats, o: &GroupStats) -> Self {
        let eps = 1e-3;
        let size = m.image_sum.size()[1];
        let log_gain = ((m.mean_amplitude() + eps) / (o.mean_amplitude() + eps))
            .log()
            .clamp(-MAX_GAIN.ln(), MAX_GAIN.ln())
            * high_frequencies(size).to_kind(Kind::Float);
        let ((mean_m, sd_m), (mean_o, sd_o)) = (m.channel_moments(), o.channel_moments());
        let log_contrast = ((sd_m + 1.0) / (sd_o + 1.0)).log();
        let offset = (mean_m - log_contrast.exp() * mean_o) / 255.0;
        let statistics = discriminant(&m.per_image, &o.per_image);
        // What the affine map leaves of the mean-image difference.
        let layout = m.mean_image() - o.mean_image();
        let layout = &layout - layout.mean_dim([1i64, 2].as_slice(), true, Kind::Float);
        let grey = layout.mean_dim([0i64].as_slice(), true, Kind::Float);
        Self {
            log_contrast,
            offset,
            statistics,
            colour: &layout - &grey,
            edges: grey.expand_as(&layout) * edge_band(size),
            log_gain,
        }
    }

    /// These transforms scaled to the sizes of `like`'s.
    fn scaled_to(&self, like: &Transforms) -> Self {
        let scale = |t: &Tensor, target: &Tensor| {
            let (n, m) = (t.norm().double_value(&[]), target.norm().double_value(&[]));
            if n > 0.0 {
                t * (m / n)
            } else {
                t.shallow_clone()
            }
        };
        // The affine map as one vector of log gains and offsets.
        let affine = |t: &Transforms| {
            Tensor::cat(&[t.log_contrast.flatten(0, -1), t.offset.flatten(0, -1)], 0)
        };
        let scaled = scale(&affine(self), &affine(like));
        Self {
            log_contrast: scaled.narrow(0, 0, 3).view([3, 1, 1]),
            offset: scaled.narrow(0, 3, 3).view([3, 1, 1]),
            statistics: self.statistics.shallow_clone(),
            colour: scale(&self.colour, &like.colour),
            edges: scale(&self.edges, &like.edges),
            log_gain: scale(&self.log_gain, &like.log_gain),
        }
    }

    /// uint8 images with the `cue` applied.
    fn apply(&self, cue: Cue, images: &Tensor) -> Tensor {
        let x = images.to_kind(Kind::Float);
        let out = match cue {
            Cue::Shift => x * self.log_contrast.exp() + &self.offset * 255.0,
            Cue::Colour => x + &self.colour,
            Cue::Edges => x + &self.edges,
            Cue::Texture => {
                let size = images.size();
                let f = x.fft_rfft2(None::<&[i64]>, [-2i64, -1].as_slice(), "backward");
                (f * self.log_gain.exp()).fft_irfft2(
                    Some([size[2], size[3]].as_slice()),
                    [-2i64, -1].as_slice(),
                    "backward",
                )
            }
        };
        out.clamp(0.0, 255.0).round().to_kind(Kind::Uint8)
    }

    /// A tint when the channels move apart (the affine map differs between
    /// them), else a brightness (or contrast) change.
    fn shift_looks(&self) -> Looks {
        // The map's effect on a mid-grey pixel, per channel.
        tint_or_brightness(&(self.log_contrast.exp() * 128.0 + &self.offset * 255.0 - 128.0))
    }

    /// How much each image of a group carries each cue: its projection on
    /// it, in the order of `CUES`. The shift's comes from the statistics the
    /// group's pass gathered; the others take one more pass.
    fn projections(&self, group: &GroupStats, images: &Tensor, idx: &[usize]) -> [Vec<f64>; 4] {
        let as_f64 = |t: &Tensor| -> Vec<f64> {
            Vec::<f32>::try_from(t)
                .expect("float projections")
                .into_iter()
                .map(f64::from)
                .collect()
        };
        let per_image = |t: Tensor| t.sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float);
        let (mut colour, mut edges, mut texture) = (Vec::new(), Vec::new(), Vec::new());
        for x in float_chunks(images, idx) {
            let chroma = &x - x.mean_dim([1i64].as_slice(), true, Kind::Float);
            colour.extend(as_f64(&per_image(chroma * &self.colour)));
            edges.extend(as_f64(&per_image(&x * &self.edges)));
            texture.extend(as_f64(&per_image(
                (amplitude(&x) + 1e-3).log() * &self.log_gain,
            )));
        }
        [
            as_f64(&group.per_image.matmul(&self.statistics)),
            colour,
            edges,
            texture,
        ]
    }

    /// What the cue changes (see `Looks`).
    fn looks(&self, cue: Cue) -> Looks {
        match cue {
            Cue::Shift => self.shift_looks(),
            Cue::Colour => layout_looks(&self.colour),
            Cue::Edges => Looks::Border,
            Cue::Texture => {
                let high = high_frequencies(self.log_gain.size()[1]);
                let mean = self
                    .log_gain
                    .masked_select(&high.expand_as(&self.log_gain))
                    .mean(Kind::Float)
                    .double_value(&[]);
                if mean >= 0.0 {
                    Looks::Noise
                } else {
                    Looks::Blur
                }
            }
        }
    }
}

/// `targets` (uint8) with the `cue` of the `images` at `members` against
/// those at `others` applied: moved towards the members' looks, as the
/// detector's transplant test moves them. `revise` neutralises a found cue
/// with it (the cue put on the other classes, or the others' looks put on
/// the class that carries it).
pub fn apply_cue(
    images: &Tensor,
    members: &[usize],
    others: &[usize],
    cue: Cue,
    targets: &Tensor,
) -> Tensor {
    let _guard = tch::no_grad_guard();
    let transforms = Transforms::between(images, members, others);
    let moved: Vec<Tensor> = (0..targets.size()[0])
        .step_by(128)
        .map(|start| {
            let len = 128.min(targets.size()[0] - start);
            transforms.apply(cue, &targets.narrow(0, start, len))
        })
        .collect();
    if moved.is_empty() {
        return targets.shallow_clone();
    }
    Tensor::cat(&moved, 0)
}

/// A tint when the per-channel changes `moved` (3 values) differ from each
/// other by more than 30% of their mean size, else a brightness change.
fn tint_or_brightness(moved: &Tensor) -> Looks {
    let m: Vec<f32> = Vec::try_from(moved.flatten(0, -1)).expect("float channels");
    let spread =
        m.iter().cloned().fold(f32::MIN, f32::max) - m.iter().cloned().fold(f32::MAX, f32::min);
    let level = m.iter().map(|v| v.abs()).sum::<f32>() / m.len() as f32;
    if spread > 0.3 * level {
        Looks::Tint
    } else {
        Looks::Brightness
    }
}

/// What a mean-image difference `[3, S, S]` changes: mostly one shift
/// everywhere (a tint, or brightness when the channels agree), mostly the
/// edges (a border), or fixed places (a pattern).
fn layout_looks(d: &Tensor) -> Looks {
    let total = d.square().sum(Kind::Float).double_value(&[]).max(1e-12);
    let channel_means = d.mean_dim([1i64, 2].as_slice(), false, Kind::Float);
    let pixels = (d.size()[1] * d.size()[2]) as f64;
    let constant = channel_means.square().sum(Kind::Float).double_value(&[]) * pixels;
    if constant / total >= 0.5 {
        return tint_or_brightness(&channel_means);
    }
    let edge_share = (d.square() * edge_band(d.size()[1]))
        .sum(Kind::Float)
        .double_value(&[])
        / total;
    if edge_share >= 0.7 {
        Looks::Border
    } else {
        Looks::Pattern
    }
}

/// The gap between the means of `pos` and `neg` over their pooled
/// standard deviation (0 when either is empty).
fn separation(pos: &[f64], neg: &[f64]) -> f64 {
    let stats = |v: &[f64]| {
        let n = v.len().max(1) as f64;
        let mean = v.iter().sum::<f64>() / n;
        (mean, v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n)
    };
    if pos.is_empty() || neg.is_empty() {
        return 0.0;
    }
    let ((mp, vp), (mn, vn)) = (stats(pos), stats(neg));
    (mp - mn) / ((vp + vn) / 2.0).sqrt().max(1e-9)
}

/// Every class's four global cues, tested on up to `pairs` of the
/// other classes' images in the `targets` sample (uint8 `[B, 3, S, S]`,
/// each with its class in `target_class`).
pub fn global_candidates(
    e: &Evidence,
    targets: &Tensor,
    target_class: &[usize],
    pairs: usize,
) -> Vec<GlobalCandidate> {
    let _guard = tch::no_grad_guard();
    let classes = e.class_names.len();
    let groups = sample(e.labels, classes, MEAN_OVER);
    // The class-blind split the controls are built from: every sampled
    // image, in a fixed shuffled order.
    let mut pooled: Vec<usize> = groups.iter().flatten().copied().collect();
    pooled.shuffle(&mut ChaCha8Rng::seed_from_u64(0x610b));
    // One pass over each class's images, and over each half of the
    // class-blind split.
    let stats: Vec<GroupStats> = groups.iter().map(|g| GroupStats::of(e.train, g)).collect();
    let mut out = Vec::new();
    for (class, name) in e.class_names.iter().enumerate() {
        let members = &stats[class];
        let other_groups: Vec<&GroupStats> = (0..classes)
            .filter(|&c| c != class)
            .map(|c| &stats[c])
            .collect();
        let on: Vec<usize> = (0..target_class.len())
            .filter(|&i| target_class[i] != class)
            .take(pairs)
            .collect();
        if groups[class].is_empty() || other_groups.iter().all(|g| g.images == 0.0) || on.is_empty()
        {
            continue;
        }
        let others = GroupStats::merged(&other_groups);
        let cue = Transforms::from_stats(members, &others);
        let (blind_members, blind_others) =
            pooled.split_at(groups[class].len().min(pooled.len() - 1));
        let control = Transforms::from_stats(
            &GroupStats::of(e.train, blind_members),
            &GroupStats::of(e.train, blind_others),
        )
        .scaled_to(&cue);
        let other_idx: Vec<usize> = (0..classes)
            .filter(|&c| c != class)
            .flat_map(|c| groups[c].iter().copied())
            .collect();
        let (pos, neg) = (
            cue.projections(members, e.train, &groups[class]),
            cue.projections(&others, e.train, &other_idx),
        );
        let base = targets.index_select(0, &index_tensor(&on));
        let p_class = |images: &Tensor| class_probability(e.model, images, class, e.device);
        let before = p_class(&base);
        let gain = |after: &[f32]| {
            after
                .iter()
                .zip(&before)
                .map(|(a, b)| (a - b) as f64)
                .sum::<f64>()
                / before.len() as f64
        };
        for (k, kind) in CUES.into_iter().enumerate() {
            let n = on.len();
            let p = p_class(&Tensor::cat(
                &[cue.apply(kind, &base), control.apply(kind, &base)],
                0,
            ));
            out.push(GlobalCandidate {
                class: name.clone(),
                cue: kind,
                looks: cue.looks(kind),
                lift: gain(&p[..n]),
                control: gain(&p[n..]),
                auroc: super::evaluate::auroc(&pos[k], &neg[k]).unwrap_or(0.5),
                separation: separation(&pos[k], &neg[k]),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(c: [f32; 3], size: i64) -> Tensor {
        Tensor::from_slice(&c)
            .view([3, 1, 1])
            .expand([3, size, size], false)
            .copy()
    }

    #[test]
    fn a_constant_shift_reads_as_tint_or_brightness() {
        assert_eq!(layout_looks(&flat([30.0, 10.0, -5.0], 32)), Looks::Tint);
        assert_eq!(
            layout_looks(&flat([20.0, 20.0, 20.0], 32)),
            Looks::Brightness
        );
    }

    #[test]
    fn a_frame_reads_as_border_and_a_patch_as_pattern() {
        let frame = Tensor::full([3, 32, 32], 100.0, (Kind::Float, Device::Cpu));
        let _ = frame.narrow(1, 2, 28).narrow(2, 2, 28).fill_(0.0);
        assert_eq!(layout_looks(&frame), Looks::Border);
        let patch = Tensor::zeros([3, 32, 32], (Kind::Float, Device::Cpu));
        let _ = patch.narrow(1, 12, 6).narrow(2, 12, 6).fill_(100.0);
        assert_eq!(layout_looks(&patch), Looks::Pattern);
    }

    #[test]
    fn the_discriminant_follows_the_direction_that_separates_not_the_one_that_varies() {
        // Feature 0 varies a lot in both groups and does not tell them apart;
        // feature 1 varies little and does. The mean difference alone points
        // mostly along feature 0, Fisher's direction along feature 1.
        tch::manual_seed(1);
        let noise = |n| Tensor::randn([n, 2], (Kind::Float, Device::Cpu));
        let spread = Tensor::from_slice(&[10.0f32, 0.1]);
        let a = noise(200) * &spread + Tensor::from_slice(&[1.0f32, 0.5]);
        let b = noise(200) * &spread;
        let w: Vec<f32> = Vec::try_from(discriminant(&a, &b)).unwrap();
        assert!(w[1].abs() > 20.0 * w[0].abs(), "{w:?}");
        assert!(w[1] > 0.0, "{w:?}");
    }

    #[test]
    fn a_blended_tint_is_an_affine_map_that_reads_as_tint() {
        // Grey images; the class's copies blended 20% towards orange.
        tch::manual_seed(2);
        let grey = (Tensor::rand([1, 1, 24, 24], (Kind::Float, Device::Cpu)) * 200.0)
            .expand([16, 3, 24, 24], false)
            .copy();
        let tint = Tensor::from_slice(&[255.0f32, 160.0, 40.0]).view([1, 3, 1, 1]);
        let tinted = &grey * 0.8 + tint * 0.2;
        let images = Tensor::cat(&[tinted.shallow_clone(), grey.shallow_clone()], 0)
            .round()
            .to_kind(Kind::Uint8);
        let (class, others): (Vec<usize>, Vec<usize>) = ((0..16).collect(), (16..32).collect());
        let t = Transforms::between(&images, &class, &others);
        assert_eq!(t.looks(Cue::Shift), Looks::Tint);
        // Applied to a grey image, the map gives its tinted copy (to rounding).
        let mapped = t
            .apply(Cue::Shift, &images.narrow(0, 16, 1))
            .to_kind(Kind::Float);
        let diff = (mapped - images.narrow(0, 0, 1).to_kind(Kind::Float))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff <= 2.0, "{diff}");
    }

    #[test]
    fn the_texture_transform_adds_or_removes_fine_detail() {
        // Class 0: noisy images; class 1: smooth ones. The transform towards
        // class 0 adds fine detail (noise), towards class 1 removes it.
        tch::manual_seed(0);
        let smooth = Tensor::full([8, 3, 32, 32], 120.0, (Kind::Float, Device::Cpu));
        let noisy = &smooth + Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu)) * 25.0;
        let images = Tensor::cat(&[noisy, smooth], 0)
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8);
        let (a, b): (Vec<usize>, Vec<usize>) = ((0..8).collect(), (8..16).collect());
        let towards_noisy = Transforms::between(&images, &a, &b);
        assert_eq!(towards_noisy.looks(Cue::Texture), Looks::Noise);
        assert_eq!(
            Transforms::between(&images, &b, &a).looks(Cue::Texture),
            Looks::Blur
        );
        // Applied to a noisy image, the transform towards the smooth class
        // lowers its spread.
        let spread = |t: &Tensor| t.to_kind(Kind::Float).std(true).double_value(&[]);
        let one = images.narrow(0, 0, 1);
        let smoothed = Transforms::between(&images, &b, &a).apply(Cue::Texture, &one);
        assert!(
            spread(&smoothed) < 0.6 * spread(&one),
            "{} vs {}",
            spread(&smoothed),
            spread(&one)
        );
    }
}
