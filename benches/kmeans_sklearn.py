"""scikit-learn's KMeans on the same feature matrix as `nave-lab bench kmeans`.

    target/release/nave-lab --device cpu bench kmeans --save-features /tmp/feats.npy --seeds 10 > ours.json
    .venv-ref/bin/python benches/kmeans_sklearn.py /tmp/feats.npy -k 5,10 --seeds 10 > sklearn.json

Same settings as nave-lab's engines: n_init=1, k-means++ initialisation, tol, max_iter.
With --start DIR (after `nave-lab bench kmeans --same-start DIR`), both sides
iterate from the same initial centres, so their iterations and inertias can be
compared one to one.
"""
import argparse
import json
import os
import time

import numpy as np
from sklearn.cluster import KMeans

ap = argparse.ArgumentParser()
ap.add_argument("features")
ap.add_argument("-k", default="5,10")
ap.add_argument("--tol", type=float, default=1e-4)
ap.add_argument("--max-iter", type=int, default=300)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--seeds", type=int, default=1, help="run seeds seed, seed + 1, ... and report the medians")
ap.add_argument("--start", help="iterate from the centres `nave-lab bench kmeans --same-start DIR` saved (DIR/centres_k<K>_s<seed>.npy) instead of scikit-learn's k-means++")
args = ap.parse_args()

x = np.load(args.features)
results, medians = [], []
for k in [int(v) for v in args.k.split(",")]:
    runs = []
    for seed in range(args.seed, args.seed + max(args.seeds, 1)):
        init = "k-means++" if args.start is None else np.load(os.path.join(args.start, f"centres_k{k}_s{seed}.npy"))
        start = time.perf_counter()
        km = KMeans(n_clusters=k, n_init=1, init=init, tol=args.tol, max_iter=args.max_iter, random_state=seed).fit(x)
        runs.append({"engine": "sklearn", "k": k, "seed": seed, "seconds": time.perf_counter() - start, "iterations": int(km.n_iter_), "inertia": float(km.inertia_)})
    medians.append({"engine": "sklearn", "k": k, "runs": len(runs), **{key: float(np.median([r[key] for r in runs])) for key in ("seconds", "iterations", "inertia")}, "inertia_mean": float(np.mean([r["inertia"] for r in runs]))})
    results += runs
print(json.dumps({"bench": "kmeans_sklearn", "rows": x.shape[0], "dims": x.shape[1], "threads": os.cpu_count(), "results": results, "medians": medians}, indent=2))
