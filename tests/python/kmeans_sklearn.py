"""scikit-learn's KMeans from given centres: prints labels, centres and
iterations as JSON. Usage: kmeans_sklearn.py DATA.json (x: rows, init: centres)."""
import json
import sys

import numpy as np
from sklearn.cluster import KMeans

spec = json.load(open(sys.argv[1]))
x = np.asarray(spec["x"], dtype=np.float32)
init = np.asarray(spec["init"], dtype=np.float32)
km = KMeans(n_clusters=len(init), init=init, n_init=1, max_iter=spec["max_iter"],
            tol=spec["tol"], algorithm=spec.get("algorithm", "lloyd")).fit(x)
print(json.dumps({"labels": km.labels_.tolist(), "centres": km.cluster_centers_.tolist(),
                  "iterations": int(km.n_iter_)}))
