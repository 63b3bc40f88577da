//! CPU reference engines: linfa-clustering's KMeans (the reference the tensor
//! engine is checked against) and Ward agglomeration from kodama.
use linfa::prelude::*;
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use tch::{Device, Kind, Tensor};

fn to_array(x: &Tensor) -> Array2<f32> {
    let (n, d) = x.size2().expect("[N, D]");
    let flat: Vec<f32> = Vec::try_from(
        x.to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous()
            .flatten(0, -1),
    )
    .expect("f32");
    Array2::from_shape_vec((n as usize, d as usize), flat).expect("shape")
}

/// linfa's KMeans, single run. linfa stops when the Euclidean distance between
/// old and new centroids is below its tolerance; scikit-learn (and our tensor
/// engine) when the squared shift is below tol x mean feature variance. The
/// tolerance passed is sqrt(tol x variance), so the two criteria coincide.
pub fn linfa_kmeans(
    x: &Tensor,
    k: usize,
    seed: u64,
    tol: f64,
    max_iter: usize,
) -> anyhow::Result<(Tensor, f64)> {
    let variance = x
        .to_kind(Kind::Float)
        .var_dim([0i64].as_slice(), false, false)
        .mean(Kind::Float)
        .double_value(&[]);
    let data = DatasetBase::from(to_array(x));
    let model = KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(seed))
        .n_runs(1)
        .tolerance((tol * variance).sqrt() as f32)
        .max_n_iterations(max_iter as u64)
        .fit(&data)
        .map_err(|e| anyhow::anyhow!("linfa k-means: {e}"))?;
    let labels = model.predict(data.records());
    let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    // Inertia as a sum (linfa reports the mean).
    let inertia = model.inertia() as f64 * x.size()[0] as f64;
    Ok((Tensor::from_slice(&labels).to_device(x.device()), inertia))
}

/// Most points Ward runs on directly (its memory is quadratic in them).
pub const WARD_MAX_POINTS: usize = 4000;

/// Ward agglomerative clustering on Euclidean distances. Above
/// [`WARD_MAX_POINTS`] rows, Ward runs on a seeded random subsample and every
/// other row joins the cluster of the nearest centroid.
pub fn ward(x: &Tensor, k: usize, seed: u64) -> anyhow::Result<Tensor> {
    let x = x.to_kind(Kind::Float);
    let n = x.size()[0] as usize;
    let sample_idx: Vec<i64> = if n > WARD_MAX_POINTS {
        crate::info!("ward: {n} points; clustering a random subsample of {WARD_MAX_POINTS} and assigning the rest to the nearest centroid");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut s: Vec<i64> = sample(&mut rng, n, WARD_MAX_POINTS)
            .into_iter()
            .map(|i| i as i64)
            .collect();
        s.sort();
        s
    } else {
        (0..n as i64).collect()
    };
    let sub = x
        .index_select(0, &Tensor::from_slice(&sample_idx).to_device(x.device()))
        .to_device(Device::Cpu);
    let m = sample_idx.len();
    // Condensed pairwise Euclidean distances (upper triangle, row by row).
    let dist = Tensor::cdist(&sub, &sub, 2.0, None::<i64>);
    let full: Vec<f32> = Vec::try_from(dist.flatten(0, -1)).expect("f32");
    let mut condensed = Vec::with_capacity(m * (m - 1) / 2);
    for i in 0..m {
        condensed.extend_from_slice(&full[i * m + i + 1..(i + 1) * m]);
    }
    let dendrogram = kodama::linkage(&mut condensed, m, kodama::Method::Ward);
    // Replay the first m - k merges with a union-find to get k flat clusters.
    let mut parent: Vec<usize> = (0..2 * m).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    for (step, s) in dendrogram
        .steps()
        .iter()
        .take(m.saturating_sub(k))
        .enumerate()
    {
        let new = m + step;
        let (a, b) = (find(&mut parent, s.cluster1), find(&mut parent, s.cluster2));
        parent[a] = new;
        parent[b] = new;
    }
    let mut roots = std::collections::HashMap::new();
    let sub_labels: Vec<i64> = (0..m)
        .map(|i| {
            let r = find(&mut parent, i);
            let next = roots.len() as i64;
            *roots.entry(r).or_insert(next)
        })
        .collect();
    if m == n {
        return Ok(Tensor::from_slice(&sub_labels).to_device(x.device()));
    }
    // Centroids of the subsample's clusters, then nearest-centroid assignment.
    let sub_l = Tensor::from_slice(&sub_labels);
    let kk = roots.len() as i64;
    let sums =
        Tensor::zeros([kk, sub.size()[1]], (Kind::Float, Device::Cpu)).index_add(0, &sub_l, &sub);
    let counts = Tensor::zeros([kk], (Kind::Float, Device::Cpu)).index_add(
        0,
        &sub_l,
        &Tensor::ones([m as i64], (Kind::Float, Device::Cpu)),
    );
    let centres = (sums / counts.unsqueeze(1)).to_device(x.device());
    Ok(Tensor::cdist(&x, &centres, 2.0, None::<i64>).argmin(1, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nave::stats::adjusted_rand_index;

    fn blobs(per: i64) -> (Tensor, Vec<i64>) {
        tch::manual_seed(0);
        let centres = Tensor::from_slice(&[0.0f32, 0.0, 8.0, 0.0, 0.0, 8.0]).view([3, 2]);
        let truth = Tensor::arange(3 * per, (Kind::Int64, Device::Cpu)).remainder(3);
        let x = centres.index_select(0, &truth)
            + Tensor::randn([3 * per, 2], (Kind::Float, Device::Cpu)) * 0.5;
        (x, Vec::try_from(&truth).unwrap())
    }

    #[test]
    fn ward_recovers_blobs_directly_and_through_a_subsample() {
        let (x, truth) = blobs(30);
        let labels: Vec<i64> = Vec::try_from(&ward(&x, 3, 0).unwrap()).unwrap();
        assert_eq!(adjusted_rand_index(&labels, &truth), 1.0);
        let (x, truth) = blobs(1500); // 4500 points > WARD_MAX_POINTS
        let labels: Vec<i64> = Vec::try_from(&ward(&x, 3, 0).unwrap()).unwrap();
        assert!(adjusted_rand_index(&labels, &truth) > 0.99);
    }

    #[test]
    fn ward_merges_the_closest_pair_first() {
        // Points 0,1 are 1 apart, 2,3 are 1 apart, the pairs 10 apart: K = 2 splits the pairs.
        let x = Tensor::from_slice(&[0.0f32, 0.0, 1.0, 0.0, 10.0, 0.0, 11.0, 0.0]).view([4, 2]);
        let l: Vec<i64> = Vec::try_from(&ward(&x, 2, 0).unwrap()).unwrap();
        assert_eq!(l[0], l[1]);
        assert_eq!(l[2], l[3]);
        assert_ne!(l[0], l[2]);
    }

    #[test]
    fn tensor_kmeans_inertia_matches_linfa_within_one_percent() {
        // Median inertia over 5 seeds, same K, tol and max_iter.
        tch::manual_seed(3);
        let x = Tensor::randn([3000, 16], (Kind::Float, Device::Cpu))
            + Tensor::randint(4, [3000, 1], (Kind::Float, Device::Cpu)) * 3.0;
        use crate::nave::stats::median;
        let ours = median(
            &(0..5)
                .map(|s| crate::nave::kmeans::kmeans(&x, 6, s, 1e-4, 300).inertia)
                .collect::<Vec<_>>(),
        );
        let theirs = median(
            &(0..5)
                .map(|s| linfa_kmeans(&x, 6, s, 1e-4, 300).unwrap().1)
                .collect::<Vec<_>>(),
        );
        assert!(
            (ours - theirs).abs() / theirs < 0.01,
            "ours {ours} linfa {theirs}"
        );
    }
}
