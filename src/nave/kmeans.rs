//! k-means as tensor ops on the features' device: k-means++ initialisation
//! (scikit-learn's greedy variant, 2 + ln k candidates per centre) and Lloyd
//! iterations whose distances come from one matrix product per chunk of rows,
//! so memory stays near the size of the feature matrix itself. `tol` is
//! scikit-learn's: relative to the mean per-feature variance, on the squared
//! shift of the centres.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

pub struct KMeansResult {
    pub labels: Tensor,
    pub centres: Tensor,
    pub inertia: f64,
    pub iterations: usize,
}

/// Rows processed at once. Small enough that a chunk stays in cache while it
/// is used twice (distances, then the centre sums), so one Lloyd iteration
/// reads the matrix from memory once.
const CHUNK: i64 = 1024;

/// Squared Euclidean distances `[len, C]` of rows `xc` (with squared norms `xc_sq`) to `centres`.
fn sq_dists(xc: &Tensor, xc_sq: &Tensor, centres: &Tensor, c_sq: &Tensor) -> Tensor {
    // |x|^2 - 2 x.c + |c|^2
    (xc.matmul(&centres.tr()) * -2.0 + xc_sq.unsqueeze(1) + c_sq.unsqueeze(0)).clamp_min(0.0)
}

fn row_sq_norms(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    // A norm reduces without materialising the squared chunk.
    let parts: Vec<Tensor> = (0..n)
        .step_by(CHUNK as usize)
        .map(|s| {
            x.narrow(0, s, CHUNK.min(n - s))
                .norm_scalaropt_dim(2, [1i64].as_slice(), false)
                .square()
        })
        .collect();
    Tensor::cat(&parts, 0)
}

/// Mean over features of the per-feature variance, in chunks (no full-size temporary).
fn mean_variance(x: &Tensor) -> f64 {
    let (n, d) = x.size2().expect("[N, D]");
    let mut sum = Tensor::zeros([d], (Kind::Double, x.device()));
    let mut sum_sq = Tensor::zeros([d], (Kind::Double, x.device()));
    for s in (0..n).step_by(CHUNK as usize) {
        let c = x.narrow(0, s, CHUNK.min(n - s));
        sum += c.sum_dim_intlist([0i64].as_slice(), false, Kind::Double);
        sum_sq += c
            .norm_scalaropt_dim(2, [0i64].as_slice(), false)
            .to_kind(Kind::Double)
            .square();
    }
    let mean = &sum / n as f64;
    (sum_sq / n as f64 - mean.square())
        .mean(Kind::Double)
        .double_value(&[])
}

/// Squared distance of every row to the nearest of `centres`, and its index.
fn assign(x: &Tensor, x_sq: &Tensor, centres: &Tensor) -> (Tensor, Tensor) {
    let c_sq = centres
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let n = x.size()[0];
    let (mut dists, mut labels) = (Vec::new(), Vec::new());
    for s in (0..n).step_by(CHUNK as usize) {
        let len = CHUNK.min(n - s);
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

/// One Lloyd iteration in a single pass over `x`: nearest centre of every
/// row, and per-centre sums and counts of the rows assigned to it.
fn lloyd_pass(x: &Tensor, x_sq: &Tensor, centres: &Tensor) -> (Tensor, Tensor, Tensor) {
    let (k, d) = centres.size2().expect("[K, D]");
    let c_sq = centres
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let n = x.size()[0];
    let sums = Tensor::zeros([k, d], (Kind::Float, x.device()));
    let counts = Tensor::zeros([k], (Kind::Float, x.device()));
    let mut labels = Vec::new();
    for s in (0..n).step_by(CHUNK as usize) {
        let len = CHUNK.min(n - s);
        let xc = x.narrow(0, s, len);
        let l = sq_dists(&xc, &x_sq.narrow(0, s, len), centres, &c_sq).argmin(1, false);
        let _ = sums.shallow_clone().index_add_(0, &l, &xc);
        let _ = counts.shallow_clone().index_add_(
            0,
            &l,
            &Tensor::ones([len], (Kind::Float, x.device())),
        );
        labels.push(l);
    }
    (Tensor::cat(&labels, 0), sums, counts)
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
        for s in (0..n).step_by(CHUNK as usize) {
            let len = CHUNK.min(n - s);
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

pub fn kmeans(x: &Tensor, k: usize, seed: u64, tol: f64, max_iter: usize) -> KMeansResult {
    let _guard = tch::no_grad_guard();
    let x = x.to_kind(Kind::Float);
    let x_sq = row_sq_norms(&x);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut centres = init_plus_plus(&x, &x_sq, k, &mut rng);
    let threshold = tol * mean_variance(&x);
    let mut labels = Tensor::zeros([x.size()[0]], (Kind::Int64, x.device()));
    let mut iterations = 0;
    for it in 0..max_iter.max(1) {
        iterations = it + 1;
        let (new_labels, sums, counts) = lloyd_pass(&x, &x_sq, &centres);
        // An empty cluster keeps its previous centre.
        let empty = counts.eq(0.0);
        let new_centres = (sums / counts.clamp_min(1.0).unsqueeze(1))
            .where_self(&empty.logical_not().unsqueeze(1), &centres);
        let shift = (&new_centres - &centres)
            .square()
            .sum(Kind::Double)
            .double_value(&[]);
        let unchanged =
            it > 0 && bool::try_from(new_labels.eq_tensor(&labels).all()).unwrap_or(false);
        centres = new_centres;
        labels = new_labels;
        if unchanged || shift <= threshold {
            break;
        }
    }
    // Final assignment to the final centres, as scikit-learn does.
    let (dist, final_labels) = assign(&x, &x_sq, &centres);
    KMeansResult {
        inertia: dist.sum(Kind::Double).double_value(&[]),
        labels: final_labels,
        centres,
        iterations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nave::score::adjusted_rand_index;

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
}
