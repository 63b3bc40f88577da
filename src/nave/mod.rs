//! NAVE: Neuro-Activated Vision Explanations (paper Algorithm 1, following
//! the authors' code where DESIGN.md says so): cluster the frozen network's
//! activations at chosen taps and read the clusters as a segmentation.
pub mod colour;
pub mod components;
pub mod explain;
pub mod extract;
pub mod kmeans;
pub mod pca;
pub mod reference;
pub mod stats;

use tch::Tensor;

use crate::config::ClusterMethod;

/// Clusters the rows of `x` (`[N, D]`, float, any device) into `k` groups;
/// returns labels `[N]` (int64, same device).
pub fn cluster(
    x: &Tensor,
    method: ClusterMethod,
    k: usize,
    seed: u64,
    tol: f64,
    max_iter: usize,
) -> anyhow::Result<Tensor> {
    let n = x.size()[0] as usize;
    if k > n {
        anyhow::bail!("K = {k} clusters but only {n} points to cluster; lower -k");
    }
    match method {
        ClusterMethod::Kmeans => Ok(kmeans::kmeans(x, k, seed, tol, max_iter).labels),
        ClusterMethod::Pca => Ok(pca::pca_labels(x, k)),
        ClusterMethod::Linfa => Ok(reference::linfa_kmeans(x, k, seed, tol, max_iter)?.0),
        ClusterMethod::Ward => reference::ward(x, k, seed),
    }
}
