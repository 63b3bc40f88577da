//! The paper's PCA variant: project the centred features on the first K
//! principal components and label each row by the component with the largest
//! absolute projection.
use tch::{Kind, Tensor};

pub fn pca_labels(x: &Tensor, k: usize) -> Tensor {
    let _guard = tch::no_grad_guard();
    let x = x.to_kind(Kind::Double);
    let centred = &x - x.mean_dim([0i64].as_slice(), true, Kind::Double);
    // Eigenvectors of the D x D covariance (cheaper than an SVD of N x D when N >> D).
    let cov = centred.tr().matmul(&centred);
    let (_, vectors) = cov.linalg_eigh("L"); // ascending eigenvalues
    let d = vectors.size()[1];
    let top = vectors.narrow(1, d - k as i64, k as i64).flip([1]); // [D, K], largest first
    centred.matmul(&top).abs().argmax(1, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_along_each_axis_get_that_component() {
        // Variance 100 along x, 9 along y: component 0 is x, component 1 is y.
        let x = Tensor::from_slice(&[10.0f32, 0.0, -10.0, 0.0, 0.0, 3.0, 0.0, -3.0, 9.0, 1.0])
            .view([5, 2]);
        let labels: Vec<i64> = Vec::try_from(&pca_labels(&x, 2)).unwrap();
        assert_eq!(labels, vec![0, 0, 1, 1, 0]);
    }
}
