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

/// Rows processed at once when computing distances.
const CHUNK: i64 = 8192;

/// Squared distances of every row to its nearest centre, and that centre's index.
fn assign(x: &Tensor, x_sq: &Tensor, centres: &Tensor) -> (Tensor, Tensor) {
    let c_sq = centres
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float); // [K]
    let n = x.size()[0];
    let (mut dists, mut labels) = (Vec::new(), Vec::new());
    let mut start = 0;
    while start < n {
        let len = CHUNK.min(n - start);
        let xc = x.narrow(0, start, len);
        // |x|^2 - 2 x.c + |c|^2, [len, K]
        let d = xc.matmul(&centres.tr()) * -2.0
            + x_sq.narrow(0, start, len).unsqueeze(1)
            + c_sq.unsqueeze(0);
        let (v, i) = d.min_dim(1, false);
        dists.push(v.clamp_min(0.0));
        labels.push(i);
        start += len;
    }
    (Tensor::cat(&dists, 0), Tensor::cat(&labels, 0))
}

/// Greedy k-means++ (as scikit-learn): each new centre is the best of several
/// candidates drawn with probability proportional to the squared distance.
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
        let draws_t = Tensor::from_slice(&draws);
        let idx = draws_t
            .searchsorted(&cum, false, false, "left", None::<Tensor>)
            .clamp(0, n - 1)
            .to_device(x.device());
        let candidates = x.index_select(0, &idx); // [trials, D]
                                                  // Potential of each candidate: sum of min(closest, d(x, candidate)).
        let mut best: Option<(f64, i64, Tensor)> = None;
        for t in 0..trials as i64 {
            let (d, _) = assign(x, x_sq, &candidates.get(t).unsqueeze(0));
            let new_closest = closest.minimum(&d);
            let pot = new_closest.sum(Kind::Double).double_value(&[]);
            if best.as_ref().is_none_or(|(p, _, _)| pot < *p) {
                best = Some((pot, t, new_closest));
            }
        }
        let (_, t, new_closest) = best.expect("at least one trial");
        centres.push(candidates.get(t));
        closest = new_closest;
    }
    Tensor::stack(&centres, 0)
}

pub fn kmeans(x: &Tensor, k: usize, seed: u64, tol: f64, max_iter: usize) -> KMeansResult {
    let _guard = tch::no_grad_guard();
    let x = x.to_kind(Kind::Float);
    let x_sq = x
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut centres = init_plus_plus(&x, &x_sq, k, &mut rng);
    let variance = x
        .var_dim([0i64].as_slice(), false, false)
        .mean(Kind::Float)
        .double_value(&[]);
    let threshold = tol * variance;
    let d = x.size()[1];
    let mut labels = Tensor::zeros([x.size()[0]], (Kind::Int64, x.device()));
    let mut iterations = 0;
    for it in 0..max_iter.max(1) {
        iterations = it + 1;
        let (_, new_labels) = assign(&x, &x_sq, &centres);
        // Centre update: sums and counts through scatter-add.
        let sums =
            Tensor::zeros([k as i64, d], (Kind::Float, x.device())).index_add(0, &new_labels, &x);
        let counts = Tensor::zeros([k as i64], (Kind::Float, x.device())).index_add(
            0,
            &new_labels,
            &Tensor::ones_like(&new_labels).to_kind(Kind::Float),
        );
        let empty = counts.eq(0.0);
        // An empty cluster keeps its previous centre.
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
