//! NAVE's k-means against scikit-learn where they can part: empty clusters.
mod common;

use nave_lab::nave::kmeans;
use tch::Tensor;

#[test]
fn an_empty_cluster_takes_the_farthest_point_as_scikit_learn_does() {
    // Two blobs, and a third starting centre far from every point: after the
    // first assignment it is empty. scikit-learn moves it onto the point
    // farthest from its centre; a centre kept where it was stays empty for ever.
    let mut rows = Vec::new();
    for i in 0..12 {
        let t = i as f32 * 0.5;
        rows.push([t * 0.1, (t * 1.3).sin()]);
        rows.push([10.0 + (t * 0.7).cos(), t * 0.2]);
    }
    rows.push([4.0, 6.0]); // an outlier: the farthest from its centre
    let init = [[0.0f32, 0.0], [10.0, 0.0], [100.0, 100.0]];
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let x = Tensor::from_slice(&flat).view([rows.len() as i64, 2]);
    let c = Tensor::from_slice(&init.concat()).view([3, 2]);
    let ours = kmeans::kmeans_from(&x, &c, 1e-4, 300);

    let dir = common::scratch("kmeans_empty");
    let spec = dir.join("spec.json");
    let json = serde_json::json!({ "x": rows, "init": init, "tol": 1e-4, "max_iter": 300 });
    std::fs::write(&spec, json.to_string()).unwrap();
    let out = common::run_reference("kmeans_sklearn.py", &[spec.to_str().unwrap()]);
    let theirs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let labels: Vec<i64> = Vec::try_from(&ours.labels).unwrap();
    let expected: Vec<i64> = theirs["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(labels, expected, "labels differ from scikit-learn's");
    let centres: Vec<f32> = Vec::try_from(ours.centres.flatten(0, -1)).unwrap();
    let expected: Vec<f64> = theirs["centres"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    for (a, b) in centres.iter().zip(&expected) {
        assert!(
            (*a as f64 - b).abs() < 1e-4,
            "centres {centres:?} vs {expected:?}"
        );
    }
    // Every cluster is used.
    let counts = ours.labels.bincount(None::<Tensor>, 3);
    assert!(counts.min().int64_value(&[]) > 0, "{counts}");
}
