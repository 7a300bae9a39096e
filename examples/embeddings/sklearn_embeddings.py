"""Embeddings from another library (scikit-learn's PCA or a random projection), saved for repeval.

    python examples/embeddings/sklearn_embeddings.py --method pca --out digits_pca.npz
    repeval run --encoder latents:digits_pca.npz --task all

The file holds z_train, y_train, z_test, y_test (one row per image, in the dataset's order)
and a meta JSON naming the dataset, so repeval groups the scores with `digits` and checks
that the labels are digits' own.
"""
import argparse
import json

import numpy as np
from sklearn.decomposition import PCA
from sklearn.random_projection import GaussianRandomProjection

from repeval import data  # only to get the images and labels in repeval's order

parser = argparse.ArgumentParser()
parser.add_argument("--method", choices=("pca", "random-projection"), default="pca")
parser.add_argument("--dim", type=int, default=32)
parser.add_argument("--out", default="digits_pca.npz")
args = parser.parse_args()

digits = data.load("digits")
x_train = digits.train.x.numpy().reshape(len(digits.train), -1) / 255.0
x_test = digits.test.x.numpy().reshape(len(digits.test), -1) / 255.0
if args.method == "pca":
    method = PCA(n_components=args.dim, random_state=0)
else:
    method = GaussianRandomProjection(n_components=args.dim, random_state=0)
method.fit(x_train)  # fitted on the training split only
np.savez(args.out, z_train=method.transform(x_train), y_train=digits.train.y.numpy(),
         z_test=method.transform(x_test), y_test=digits.test.y.numpy(),
         meta=np.array(json.dumps({"dataset": "digits", "encoder": f"sklearn {type(method).__name__}"})))
print(f"wrote {args.out}: {args.method} to {args.dim} dimensions")
