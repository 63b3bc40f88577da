"""scikit-learn's KMeans on the same feature matrix as `nave-lab bench kmeans`.

    target/release/nave-lab --device cpu bench kmeans --save-features /tmp/feats.npy > ours.json
    .venv-ref/bin/python benches/kmeans_sklearn.py /tmp/feats.npy -k 5,10 > sklearn.json

Same settings as nave-lab's engines: n_init=1, k-means++ initialisation, tol, max_iter.
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
args = ap.parse_args()

x = np.load(args.features)
results = []
for k in [int(v) for v in args.k.split(",")]:
    start = time.perf_counter()
    km = KMeans(n_clusters=k, n_init=1, init="k-means++", tol=args.tol, max_iter=args.max_iter, random_state=args.seed).fit(x)
    results.append({"engine": "sklearn", "k": k, "seconds": time.perf_counter() - start, "iterations": int(km.n_iter_), "inertia": float(km.inertia_)})
print(json.dumps({"bench": "kmeans_sklearn", "rows": x.shape[0], "dims": x.shape[1], "threads": os.cpu_count(), "results": results}, indent=2))
