#!/usr/bin/python3
"""scikit-learn agreement fixture for the convex start of a text bag (moe_trainer_fit_linear,
engine/src/trainer/linear.c): a small synthetic bag data set, and the class probabilities that
scikit-learn's TfidfTransformer (sublinear tf, smoothed IDF, L2 norm) + LogisticRegression
(lbfgs, multinomial, class_weight "balanced", C) give for its rows. The C test
(tests/unit/training/test-train-linear.c) fits the same rows with the trainer (idf from
moe_trainer_set_idf, then moe_trainer_fit_linear with the same C) and compares the
probabilities: agreement means the trainer minimises scikit-learn's objective (its C scaling,
class weights, unpenalised intercepts) on the same features.

Id 0 is [PAD]: a bag leaves it out, so it is no feature here either.

Run with Debian's python3 (python3-sklearn):  /usr/bin/python3 tests/golden/train/gen_linear_golden.py
Writes tests/golden/train/fixtures/linear-bag.txt:
  line 1: n_rows n_classes max_len vocab_size C
  n_rows lines: label n_tokens id id ...
  n_rows lines: the n_classes probabilities of the row
Deterministic (a seeded numpy generator).
"""
import os

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "linear-bag.txt")
N, K, L, V, C = 150, 4, 12, 60, 3.0


def main():
    rng = np.random.default_rng(20261128)
    y = rng.choice(K, size=N, p=[0.4, 0.3, 0.2, 0.1])  # unbalanced: the class weights matter
    rows = []
    for r in range(N):
        n = int(rng.integers(3, L + 1))
        ids = rng.integers(K + 1, V, size=n)
        # The class's own piece (1 + y) most of the time, sometimes twice; sometimes another's.
        k = y[r] if rng.random() < 0.7 else int(rng.integers(0, K))
        ids[int(rng.integers(0, n))] = 1 + k
        if rng.random() < 0.3:
            ids[int(rng.integers(0, n))] = 1 + k
        if rng.random() < 0.1:
            ids[int(rng.integers(0, n))] = 0  # [PAD]: left out of the bag
        rows.append([int(i) for i in ids])
    counts = np.zeros((N, V))
    for r, ids in enumerate(rows):
        for i in ids:
            if i != 0:
                counts[r, i] += 1
    X = TfidfTransformer(sublinear_tf=True, smooth_idf=True, norm="l2").fit_transform(
        csr_matrix(counts))
    lr = LogisticRegression(C=C, class_weight="balanced", max_iter=100000, tol=1e-12)
    lr.fit(X, y)
    P = lr.predict_proba(X)
    with open(OUT, "w") as f:
        f.write(f"{N} {K} {L} {V} {C}\n")
        for r, ids in enumerate(rows):
            f.write(f"{y[r]} {len(ids)} " + " ".join(map(str, ids)) + "\n")
        for r in range(N):
            f.write(" ".join(f"{p:.10f}" for p in P[r]) + "\n")
    print(f"wrote {OUT}: train accuracy {lr.score(X, y):.3f}, {lr.n_iter_[0]} lbfgs iterations")


if __name__ == "__main__":
    main()
