//! k-means as tensor ops on the features' device: k-means++ initialisation
//! (scikit-learn's greedy variant, 2 + ln k candidates per centre) and Lloyd
//! iterations whose distances come from one matrix product per chunk of rows,
//! so memory stays near the size of the feature matrix itself. Elkan's
//! triangle-inequality bounds skip the rows whose centre cannot have changed,
//! so late iterations read a few percent of the matrix; the assignments are
//! those of plain Lloyd iterations. `tol` is scikit-learn's: relative to the
//! mean per-feature variance, on the squared shift of the centres.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

pub struct KMeansResult {
    pub labels: Tensor,
    pub centres: Tensor,
    pub inertia: f64,
    pub iterations: usize,
}

/// Rows processed at once: about 4 MB of them (at least 1,024 rows), small
/// enough that a chunk stays in cache while it is used twice (distances, then
/// the centre sums), so one Lloyd iteration reads the matrix from memory once,
/// and large enough that narrow rows do not pay a dozen small tensor ops per
/// thousand rows.
fn chunk_rows(x: &Tensor) -> i64 {
    let d = x.size()[1].max(1);
    (CHUNK_BYTES / (4 * d)).clamp(1024, 16384)
}

const CHUNK_BYTES: i64 = 4 << 20;

/// Squared Euclidean distances `[len, C]` of rows `xc` (with squared norms `xc_sq`) to `centres`.
fn sq_dists(xc: &Tensor, xc_sq: &Tensor, centres: &Tensor, c_sq: &Tensor) -> Tensor {
    // |x|^2 - 2 x.c + |c|^2
    (xc.matmul(&centres.tr()) * -2.0 + xc_sq.unsqueeze(1) + c_sq.unsqueeze(0)).clamp_min(0.0)
}

fn row_sq_norms(x: &Tensor) -> Tensor {
    let (n, chunk) = (x.size()[0], chunk_rows(x));
    // A norm reduces without materialising the squared chunk.
    let parts: Vec<Tensor> = (0..n)
        .step_by(chunk as usize)
        .map(|s| {
            x.narrow(0, s, chunk.min(n - s))
                .norm_scalaropt_dim(2, [1i64].as_slice(), false)
                .square()
        })
        .collect();
    Tensor::cat(&parts, 0)
}

/// Squared distance of every row to the nearest of `centres`, and its index.
fn assign(x: &Tensor, x_sq: &Tensor, centres: &Tensor) -> (Tensor, Tensor) {
    let c_sq = sq_norms(centres);
    let (n, chunk) = (x.size()[0], chunk_rows(x));
    let (mut dists, mut labels) = (Vec::new(), Vec::new());
    for s in (0..n).step_by(chunk as usize) {
        let len = chunk.min(n - s);
        let (v, i) = sq_dists(
            &x.narrow(0, s, len),
            &x_sq.narrow(0, s, len),
            centres,
            &c_sq,
        )
        .min_dim(1, false);
        dists.push(v);
        labels.push(i);
    }
    (Tensor::cat(&dists, 0), Tensor::cat(&labels, 0))
}

/// Greedy k-means++ (as scikit-learn): each new centre is the best of several
/// candidates drawn with probability proportional to the squared distance.
/// The candidates' distances come from one pass over the matrix.
fn init_plus_plus(x: &Tensor, x_sq: &Tensor, k: usize, rng: &mut ChaCha8Rng) -> Tensor {
    let n = x.size()[0];
    let trials = 2 + (k as f64).ln() as usize;
    let first = rng.gen_range(0..n);
    let mut centres = vec![x.get(first)];
    let (mut closest, _) = assign(x, x_sq, &x.get(first).unsqueeze(0));
    for _ in 1..k {
        let cum = closest
            .to_kind(Kind::Double)
            .cumsum(0, Kind::Double)
            .to_device(tch::Device::Cpu);
        let total = cum.double_value(&[n - 1]);
        let draws: Vec<f64> = (0..trials).map(|_| rng.gen::<f64>() * total).collect();
        let idx = Tensor::from_slice(&draws)
            .searchsorted(&cum, false, false, "left", None::<Tensor>)
            .clamp(0, n - 1)
            .to_device(x.device());
        let candidates = x.index_select(0, &idx); // [trials, D]
        let c_sq = candidates
            .square()
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        // Potential of each candidate: sum over rows of min(closest, d(row, candidate)).
        let mut potential = Tensor::zeros([trials as i64], (Kind::Double, x.device()));
        let mut per_chunk = Vec::new();
        let chunk = chunk_rows(x);
        for s in (0..n).step_by(chunk as usize) {
            let len = chunk.min(n - s);
            let d = sq_dists(
                &x.narrow(0, s, len),
                &x_sq.narrow(0, s, len),
                &candidates,
                &c_sq,
            );
            let m = d.minimum(&closest.narrow(0, s, len).unsqueeze(1)); // [len, trials]
            potential += m.sum_dim_intlist([0i64].as_slice(), false, Kind::Double);
            per_chunk.push(m);
        }
        let best = potential.argmin(0, false).int64_value(&[]);
        closest = Tensor::cat(
            &per_chunk
                .iter()
                .map(|m| m.select(1, best))
                .collect::<Vec<_>>(),
            0,
        );
        centres.push(candidates.get(best));
    }
    Tensor::stack(&centres, 0)
}

/// Lloyd's algorithm with Elkan's bounds (Elkan 2003), kept per row as
/// tensors: an upper bound on the distance to the row's own centre and a
/// lower bound on the distance to every centre. After the centres move, the
/// bounds move by at most the centres' shifts; a row is read again only when
/// some other centre could now be nearer. Assignments are those of plain
/// Lloyd iterations, but once the clustering settles an iteration touches a
/// small part of the matrix instead of all of it.
struct Bounded {
    labels: Tensor,
    /// `[N]` upper bound on the distance of each row to its centre.
    upper: Tensor,
    /// `[N, K]` lower bounds on the distance of each row to each centre.
    lower: Tensor,
    /// `[K, D]` per-centre sums of the assigned rows, in f64 so that many
    /// incremental moves do not drift.
    sums: Tensor,
    /// `[K]` rows per centre (f64).
    counts: Tensor,
}

impl Bounded {
    /// The first iteration: every row's distances to every centre, and the
    /// centre sums from the same chunks while they are in cache.
    fn first_pass(x: &Tensor, x_sq: &Tensor, centres: &Tensor) -> Self {
        let (k, d) = centres.size2().expect("[K, D]");
        let c_sq = sq_norms(centres);
        let (n, chunk) = (x.size()[0], chunk_rows(x));
        let mut sums = Tensor::zeros([k, d], (Kind::Double, x.device()));
        let (mut labels, mut upper, mut lower) = (Vec::new(), Vec::new(), Vec::new());
        for s in (0..n).step_by(chunk as usize) {
            let len = chunk.min(n - s);
            let xc = x.narrow(0, s, len);
            let dist = sq_dists(&xc, &x_sq.narrow(0, s, len), centres, &c_sq).sqrt();
            let (best, l) = dist.min_dim(1, false);
            // A chunk's sums in float32, the total in f64: the inertia is
            // computed from these sums.
            let part = Tensor::zeros([k, d], (Kind::Float, x.device())).index_add(0, &l, &xc);
            sums += part.to_kind(Kind::Double);
            labels.push(l);
            upper.push(best);
            lower.push(dist);
        }
        let labels = Tensor::cat(&labels, 0);
        Bounded {
            counts: labels.bincount(None::<Tensor>, k).to_kind(Kind::Double),
            labels,
            upper: Tensor::cat(&upper, 0),
            lower: Tensor::cat(&lower, 0),
            sums,
        }
    }

    /// scikit-learn's scale for `tol`, the mean per-feature variance: the
    /// column sums are the total of the centre sums.
    fn mean_variance(&self, x_sq: &Tensor) -> f64 {
        let (n, d) = (x_sq.size()[0] as f64, self.sums.size()[1] as f64);
        let mean = self
            .sums
            .sum_dim_intlist([0i64].as_slice(), false, Kind::Double)
            / n;
        let mean_sq = x_sq.sum(Kind::Double).double_value(&[]) / n;
        ((mean_sq - mean.square().sum(Kind::Double).double_value(&[])) / d).max(0.0)
    }

    /// Sum of squared distances of the rows to `centres` under the current
    /// labels, from the centre sums: |x|^2 - 2 c.S + n |c|^2 per centre.
    fn inertia(&self, x_sq: &Tensor, centres: &Tensor) -> f64 {
        let c = centres.to_kind(Kind::Double);
        let rows = x_sq.sum(Kind::Double).double_value(&[]);
        let cross = (&c * &self.sums).sum(Kind::Double).double_value(&[]);
        let own = (&self.counts
            * c.square()
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Double))
        .sum(Kind::Double)
        .double_value(&[]);
        (rows - 2.0 * cross + own).max(0.0)
    }

    /// Means of the assigned rows. An empty cluster takes, as scikit-learn
    /// does, the row farthest from its centre in `previous` (the farthest
    /// rows, one per empty cluster, largest distance to the first empty
    /// cluster), which leaves its own cluster for it.
    fn centres(&mut self, x: &Tensor, previous: &Tensor) -> Tensor {
        let empty: Vec<i64> =
            Vec::try_from(self.counts.eq(0.0).nonzero().squeeze_dim(1)).expect("cluster indices");
        if !empty.is_empty() {
            let gap = (x - previous.index_select(0, &self.labels))
                .square()
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
            let (_, far) = gap.topk(empty.len() as i64, 0, true, true);
            let far: Vec<i64> = Vec::try_from(&far).expect("row indices");
            for (&cluster, &row) in empty.iter().zip(&far) {
                let old = self.labels.int64_value(&[row]);
                let point = x.get(row).to_kind(Kind::Double);
                let _ = self.sums.get(old).g_sub_(&point);
                self.sums.get(cluster).copy_(&point);
                let _ = self.counts.get(old).g_sub_scalar_(1.0);
                let _ = self.counts.get(cluster).fill_(1.0);
                // The row now belongs to its new cluster, so that the sums
                // stay those of the labels; its bounds stay valid (its
                // distance to the new centre is 0).
                let _ = self.labels.get(row).fill_(cluster);
            }
        }
        let still_empty = self.counts.le(0.0);
        (&self.sums / self.counts.clamp_min(1.0).unsqueeze(1))
            .to_kind(Kind::Float)
            .where_self(&still_empty.logical_not().unsqueeze(1), previous)
    }

    /// The centres moved by `shift` (per centre): loosen the bounds so they
    /// still hold.
    fn centres_moved(&mut self, shift: &Tensor) {
        self.upper += shift.index_select(0, &self.labels);
        // A bound below zero is merely loose; no need to clamp it.
        self.lower -= shift.unsqueeze(0);
    }

    /// Re-reads the rows whose nearest centre may have changed, moves those
    /// whose did, and returns how many moved. `margin` covers float32
    /// rounding of the computed distances.
    fn reassign(&mut self, x: &Tensor, x_sq: &Tensor, centres: &Tensor, margin: f64) -> i64 {
        let (n, k, chunk) = (x.size()[0], centres.size()[0], chunk_rows(x));
        let c_sq = sq_norms(centres);
        // Half the distance between centres; infinite on the diagonal, so
        // that a row's own centre never counts as a rival.
        let half_gap = (sq_dists(centres, &c_sq, centres, &c_sq).sqrt() * 0.5).masked_fill(
            &Tensor::eye(k, (Kind::Bool, centres.device())),
            f64::INFINITY,
        );
        let upper = (&self.upper + margin).unsqueeze(1);
        // Centre j may be nearer than the own centre a only if neither its
        // lower bound nor half the distance between a and j rules it out.
        let open = upper
            .gt_tensor(&self.lower)
            .logical_and_(&upper.gt_tensor(&half_gap.index_select(0, &self.labels)));
        let rows = open.any_dim(1, false).nonzero().squeeze_dim(1);
        let m = rows.size()[0];
        // With most rows to re-read, contiguous chunks beat gathering them.
        let all = 2 * m > n;
        let (to_read, rows) = if all {
            (n, Tensor::arange(n, (Kind::Int64, x.device())))
        } else {
            (m, rows)
        };
        let mut moved = 0;
        for s in (0..to_read).step_by(chunk as usize) {
            let len = chunk.min(to_read - s);
            let idx = rows.narrow(0, s, len);
            let (xc, xc_sq) = if all {
                (x.narrow(0, s, len), x_sq.narrow(0, s, len))
            } else {
                (x.index_select(0, &idx), x_sq.index_select(0, &idx))
            };
            let dist = sq_dists(&xc, &xc_sq, centres, &c_sq).sqrt();
            let (best, new) = dist.min_dim(1, false);
            let old = self.labels.index_select(0, &idx);
            let _ = self.upper.index_copy_(0, &idx, &best);
            let _ = self.lower.index_copy_(0, &idx, &dist);
            let _ = self.labels.index_copy_(0, &idx, &new);
            let which = new.ne_tensor(&old).nonzero().squeeze_dim(1);
            let count = which.size()[0];
            if count == 0 {
                continue;
            }
            let rows_moved = xc.index_select(0, &which).to_kind(Kind::Double);
            let (from, to) = (old.index_select(0, &which), new.index_select(0, &which));
            let ones = Tensor::ones([count], (Kind::Double, x.device()));
            let _ = self.sums.index_add_(0, &from, &(-&rows_moved));
            let _ = self.sums.index_add_(0, &to, &rows_moved);
            let _ = self.counts.index_add_(0, &from, &(-&ones));
            let _ = self.counts.index_add_(0, &to, &ones);
            moved += count;
        }
        moved
    }
}

fn sq_norms(centres: &Tensor) -> Tensor {
    centres
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
}

/// `[K]` distance each centre moved from `old` to `new`.
fn centre_shifts(new: &Tensor, old: &Tensor) -> Tensor {
    (new - old).norm_scalaropt_dim(2, [1i64].as_slice(), false)
}

fn sum_of_squares(v: &Tensor) -> f64 {
    v.to_kind(Kind::Double)
        .square()
        .sum(Kind::Double)
        .double_value(&[])
}

pub fn kmeans(x: &Tensor, k: usize, seed: u64, tol: f64, max_iter: usize) -> KMeansResult {
    let _guard = tch::no_grad_guard();
    let x = x.to_kind(Kind::Float);
    let x_sq = row_sq_norms(&x);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres = init_plus_plus(&x, &x_sq, k, &mut rng);
    lloyd_elkan(&x, &x_sq, centres, tol, max_iter)
}

/// The best (lowest inertia) of `n_init` k-means runs from successive
/// k-means++ draws of one seeded generator, as scikit-learn's `n_init`
/// (the first run wins ties). `n_init = 1` is `kmeans`.
pub fn kmeans_best_of(
    x: &Tensor,
    k: usize,
    seed: u64,
    n_init: usize,
    tol: f64,
    max_iter: usize,
) -> KMeansResult {
    let _guard = tch::no_grad_guard();
    let x = x.to_kind(Kind::Float);
    let x_sq = row_sq_norms(&x);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut best: Option<KMeansResult> = None;
    for _ in 0..n_init.max(1) {
        let centres = init_plus_plus(&x, &x_sq, k, &mut rng);
        let run = lloyd_elkan(&x, &x_sq, centres, tol, max_iter);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    best.expect("at least one run")
}

/// The k-means++ centres `kmeans` starts from with this seed (`[K, D]`).
pub fn initial_centres(x: &Tensor, k: usize, seed: u64) -> Tensor {
    let _guard = tch::no_grad_guard();
    let x = x.to_kind(Kind::Float);
    let x_sq = row_sq_norms(&x);
    init_plus_plus(&x, &x_sq, k, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// k-means from given centres: `kmeans` without its initialisation, e.g. to
/// compare the iterations with another implementation from the same start.
pub fn kmeans_from(x: &Tensor, centres: &Tensor, tol: f64, max_iter: usize) -> KMeansResult {
    let _guard = tch::no_grad_guard();
    let x = x.to_kind(Kind::Float);
    let x_sq = row_sq_norms(&x);
    lloyd_elkan(&x, &x_sq, centres.to_kind(Kind::Float), tol, max_iter)
}

/// Lloyd iterations from `centres`, with Elkan's bounds.
fn lloyd_elkan(
    x: &Tensor,
    x_sq: &Tensor,
    mut centres: Tensor,
    tol: f64,
    max_iter: usize,
) -> KMeansResult {
    // Distances from |x|^2 - 2 x.c + |c|^2 in float32 carry rounding of about
    // 1e-5 of the typical row norm; rows within that of a tie are re-read
    // rather than trusted to the bounds.
    let margin = 1e-5 * x_sq.mean(Kind::Double).double_value(&[]).sqrt();
    let mut state = Bounded::first_pass(x, x_sq, &centres);
    let threshold = tol * state.mean_variance(x_sq);
    let mut next = state.centres(x, &centres);
    let mut shift = centre_shifts(&next, &centres);
    let mut iterations = 1;
    // Stop on a small shift or unchanged labels, as scikit-learn does.
    while iterations < max_iter && sum_of_squares(&shift) > threshold {
        iterations += 1;
        centres = next;
        state.centres_moved(&shift);
        let moved = state.reassign(x, x_sq, &centres, margin);
        next = state.centres(x, &centres);
        shift = centre_shifts(&next, &centres);
        if moved == 0 {
            break;
        }
    }
    // Final assignment to the final centres, as scikit-learn does: through
    // the bounds like any iteration, with the sums kept, which give the
    // inertia without reading the matrix again.
    centres = next;
    state.centres_moved(&shift);
    state.reassign(x, x_sq, &centres, margin);
    KMeansResult {
        inertia: state.inertia(x_sq, &centres),
        labels: state.labels,
        centres,
        iterations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nave::stats::adjusted_rand_index;

    #[test]
    fn recovers_separated_blobs() {
        tch::manual_seed(0);
        let centres =
            Tensor::from_slice(&[0.0f32, 0.0, 10.0, 0.0, 0.0, 10.0, 10.0, 10.0]).view([4, 2]);
        let truth = Tensor::arange(400, (Kind::Int64, tch::Device::Cpu)).remainder(4);
        let x = centres.index_select(0, &truth)
            + Tensor::randn([400, 2], (Kind::Float, tch::Device::Cpu)) * 0.5;
        let r = kmeans(&x, 4, 3, 1e-4, 300);
        let a: Vec<i64> = Vec::try_from(&r.labels).unwrap();
        let b: Vec<i64> = Vec::try_from(&truth).unwrap();
        assert_eq!(adjusted_rand_index(&a, &b), 1.0);
        // Same seed, same labels.
        let again: Vec<i64> = Vec::try_from(&kmeans(&x, 4, 3, 1e-4, 300).labels).unwrap();
        assert_eq!(a, again);
        assert!(r.inertia > 0.0 && r.inertia < 400.0 * 2.0);
    }

    /// Plain Lloyd iterations (every row, every iteration), the definition
    /// the bounded engine must reproduce.
    fn plain_lloyd(
        x: &Tensor,
        mut centres: Tensor,
        tol: f64,
        max_iter: usize,
    ) -> (Vec<i64>, usize, f64) {
        let x_sq = row_sq_norms(x);
        let threshold = tol * naive_mean_variance(x);
        let k = centres.size()[0];
        let mut labels = Tensor::zeros([x.size()[0]], (Kind::Int64, x.device()));
        let mut iterations = 0;
        for it in 0..max_iter {
            iterations = it + 1;
            let (_, new_labels) = assign(x, &x_sq, &centres);
            let next = centres.copy();
            for c in 0..k {
                let members = new_labels.eq(c).nonzero().squeeze_dim(1);
                if members.size()[0] > 0 {
                    next.get(c).copy_(&x.index_select(0, &members).mean_dim(
                        [0i64].as_slice(),
                        false,
                        Kind::Float,
                    ));
                }
            }
            let unchanged = it > 0 && bool::try_from(new_labels.eq_tensor(&labels).all()).unwrap();
            let shift = sum_of_squares(&centre_shifts(&next, &centres));
            centres = next;
            labels = new_labels;
            if unchanged || shift <= threshold {
                break;
            }
        }
        let (dist, labels) = assign(x, &x_sq, &centres);
        let inertia = dist.sum(Kind::Double).double_value(&[]);
        (Vec::try_from(&labels).unwrap(), iterations, inertia)
    }

    #[test]
    fn best_of_several_starts_keeps_the_lowest_inertia() {
        tch::manual_seed(3);
        let opts = (Kind::Float, tch::Device::Cpu);
        let x = Tensor::randn([400, 8], opts);
        let one = kmeans_best_of(&x, 7, 5, 1, 1e-4, 300);
        assert!(
            one.labels.equal(&kmeans(&x, 7, 5, 1e-4, 300).labels),
            "one start is kmeans"
        );
        let best = kmeans_best_of(&x, 7, 5, 10, 1e-4, 300);
        // The first start is one of the ten: the best cannot be worse, and on
        // unstructured data some start does better.
        assert!(
            best.inertia < one.inertia,
            "{} vs {}",
            best.inertia,
            one.inertia
        );
        let recomputed: f64 = (0..400)
            .map(|i| {
                let c = best.labels.int64_value(&[i]);
                sum_of_squares(&(x.get(i) - best.centres.get(c)))
            })
            .sum();
        assert!((recomputed - best.inertia).abs() < 1e-3 * best.inertia);
    }

    #[test]
    fn bounds_reproduce_plain_lloyd() {
        // Overlapping clusters in 16 dimensions, so many rows change centre
        // over many iterations and the bounds are really exercised.
        tch::manual_seed(1);
        let opts = (Kind::Float, tch::Device::Cpu);
        let truth = Tensor::arange(3000, (Kind::Int64, tch::Device::Cpu)).remainder(6);
        let x = Tensor::randn([6, 16], opts).index_select(0, &truth) * 0.6
            + Tensor::randn([3000, 16], opts);
        for seed in 0..3 {
            let x_sq = row_sq_norms(&x);
            let init = init_plus_plus(&x, &x_sq, 6, &mut ChaCha8Rng::seed_from_u64(seed));
            let (want, want_iterations, want_inertia) = plain_lloyd(&x, init.copy(), 0.0, 300);
            assert!(
                want_iterations > 5,
                "too easy a case: {want_iterations} iterations"
            );
            let got = lloyd_elkan(&x, &x_sq, init, 0.0, 300);
            assert_eq!(got.iterations, want_iterations, "seed {seed}");
            assert_eq!(
                Vec::<i64>::try_from(&got.labels).unwrap(),
                want,
                "seed {seed}"
            );
            // The inertia comes from the centre sums, not a last pass.
            assert!(
                (got.inertia - want_inertia).abs() < 1e-6 * want_inertia,
                "seed {seed}: inertia {} vs {want_inertia}",
                got.inertia
            );
        }
    }

    /// The mean over features of the (population) variance of each feature.
    fn naive_mean_variance(x: &Tensor) -> f64 {
        x.to_kind(Kind::Double)
            .var_correction(Some([0i64].as_slice()), 0, false)
            .mean(Kind::Double)
            .double_value(&[])
    }

    #[test]
    fn tolerance_scale_from_the_first_pass() {
        let x = Tensor::from_slice(&[1.0f32, 10.0, 3.0, 10.0, 5.0, 16.0]).view([3, 2]);
        // Feature 0: 1, 3, 5 -> variance 8/3; feature 1: 10, 10, 16 -> 8. Mean 16/3.
        assert!((naive_mean_variance(&x) - 16.0 / 3.0).abs() < 1e-9);
        let x_sq = row_sq_norms(&x);
        let centres = Tensor::from_slice(&[2.0f32, 10.0, 4.0, 14.0]).view([2, 2]);
        let state = Bounded::first_pass(&x, &x_sq, &centres);
        let v = state.mean_variance(&x_sq);
        assert!((v - 16.0 / 3.0).abs() < 1e-4, "{v}");
    }
}
