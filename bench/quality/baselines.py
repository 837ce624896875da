#!/usr/bin/python3
"""Quality baselines for Sluice's five domain tasks.

Reads ../shared/data with the same readers' semantics and the same deterministic split as
the C code (services/cli/dataset.c, split.c; the rules are in SPLITS.md), trains reference
models on the training part only, and prints validation and test metrics per task as a table
and as one JSON line (the last line of stdout). These are the figures every model card prints
beside our models.

  tabular (fraud, fault-ai4i)   logistic regression (standardised features) and XGBoost
  fault-cmapss                  ridge regression and XGBoost regression on window features,
                                the history window (30..200 cycles or all) chosen per model
                                on validation RMSE, target RUL capped at 125, scored at the
                                last observed cycle of each held-out engine against its true
                                (uncapped) RUL
  text (records-*)              TF-IDF (words, sublinear tf) + logistic regression with
                                balanced class weights, C chosen on validation macro-F1

Run with Debian's interpreter (python3-sklearn, python3-xgboost, python3-numpy):
  /usr/bin/python3 bench/quality/baselines.py [--data DIR] [--tasks a,b] [--split-fixture OUT]
--split-fixture writes tests/unit/cli/split-fixture.txt, which the C test compares with.
"""
import argparse
import csv
import io
import json
import math
import os
import re
import sys
import time

import numpy as np

TASKS = ["fraud", "fault-ai4i", "fault-cmapss", "records-mtsamples", "records-abstracts"]
FILES = {
    "fraud": "fraud/creditcard_train.csv",
    "fault-ai4i": "fault/ai4i2020_train.csv",
    "fault-cmapss": "fault/cmapss/train_FD001.txt",
    "records-mtsamples": "clinical/mtsamples_train.csv",
    "records-abstracts": "clinical/medical_abstracts/abstracts_train.csv",
}
PARTS = ["train", "validation", "test"]
MTSAMPLES_MIN_NOTES = 50  # services/cli/dataset.h CLI_MTSAMPLES_MIN_NOTES
RUL_CAP = 125
# History windows (cycles) tried for the C-MAPSS window features; None is the whole history
# observed so far. Each model takes the one with the best validation RMSE of the fold.
CMAPSS_WINDOWS = (30, 60, 100, 150, 200, None)
SEED = 0
TEXT_C_GRID = (1.0, 3.0, 10.0, 30.0)

FNV_OFFSET, FNV_PRIME, MASK64 = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK64
    return h


_WS = re.compile(rb"[ \t\n\v\f\r]+")


def text_group_hash(text: str):
    """cli_text_group_hash: ASCII-lowercase, collapse ASCII whitespace, trim; FNV-1a."""
    b = _WS.sub(b" ", text.encode("utf-8").lower()).strip(b" ")
    return fnv1a64(b), len(b) == 0


# ---- readers (same semantics as services/cli/dataset.c) ---------------------------------

def read_csv(path):
    with open(path, "r", encoding="utf-8-sig", newline="") as f:
        rows = [r for r in csv.reader(f) if r]  # blank lines carry no data, as in csv.c
    return rows[0], rows[1:]


def load(task, data_dir):
    path = os.path.join(data_dir, FILES[task])
    t = {"task": task}
    if task == "fraud":
        head, rows = read_csv(path)
        ix = {n: i for i, n in enumerate(head)}
        feats = [f"V{i}" for i in range(1, 29)] + ["Amount"]
        t["X"] = np.array([[float(r[ix[f]]) for f in feats] for r in rows])
        t["names"] = feats
        t["y"] = np.array([int(r[ix["Class"]]) for r in rows])
        t["order"] = np.array([float(r[ix["Time"]]) for r in rows])
        t["row"] = np.arange(len(rows))
    elif task == "fault-ai4i":
        head, rows = read_csv(path)
        ix = {n: i for i, n in enumerate(head)}
        num = ["Air temperature [K]", "Process temperature [K]", "Rotational speed [rpm]",
               "Torque [Nm]", "Tool wear [min]"]
        levels = ["L", "M", "H"]
        X = [[float(r[ix[f]]) for f in num] + [1.0 if r[ix["Type"]] == lv else 0.0 for lv in levels]
             for r in rows]
        t["X"] = np.array(X)
        t["names"] = num + [f"Type={lv}" for lv in levels]
        t["y"] = np.array([int(r[ix["Machine failure"]]) for r in rows])
        t["order"] = np.array([float(r[ix["UDI"]]) for r in rows])
        t["row"] = np.arange(len(rows))
    elif task == "fault-cmapss":
        a = np.array([[float(x) for x in line.split()] for line in open(path) if line.strip()])
        unit, cycle = a[:, 0].astype(int), a[:, 1].astype(int)
        last = {u: cycle[unit == u].max() for u in np.unique(unit)}
        t["raw"] = a[:, 2:]
        t["unit"], t["cycle"] = unit, cycle
        t["y"] = np.array([last[u] - c for u, c in zip(unit, cycle)], dtype=float)
        t["row"] = np.arange(len(a))
    else:
        head, rows = read_csv(path)
        ix = {n: i for i, n in enumerate(head)}
        tcol, lcol = (("transcription", "medical_specialty") if task == "records-mtsamples"
                      else ("medical_abstract", "condition_label"))
        items = []  # (row, text, label, hash)
        for r, rec in enumerate(rows):
            h, empty = text_group_hash(rec[ix[tcol]])
            if not empty:
                items.append((r, rec[ix[tcol]], rec[ix[lcol]], h))
        t["dropped"] = {"empty text": len(rows) - len(items)}
        if task == "records-mtsamples":
            rows_per_label = {}
            for _, _, lab, _ in items:
                rows_per_label[lab] = rows_per_label.get(lab, 0) + 1
            groups = {}
            for it in items:
                groups.setdefault(it[3], []).append(it)
            kept = []
            for h, g in groups.items():
                # The least frequent label (over all non-empty rows) names the text; ties bytewise.
                lab = min({x[2] for x in g}, key=lambda s: (rows_per_label[s], s.encode("utf-8")))
                first = min(g, key=lambda x: x[0])
                kept.append((first[0], first[1], lab, h))
            t["dropped"]["duplicate text"] = len(items) - len(kept)
            notes = {}
            for _, _, lab, _ in kept:
                notes[lab] = notes.get(lab, 0) + 1
            items = sorted([k for k in kept if notes[k[2]] >= MTSAMPLES_MIN_NOTES])
            t["dropped"]["rare label"] = len(kept) - len(items)
        classes = sorted({x[2] for x in items}, key=lambda s: s.encode("utf-8"))
        t["classes"] = classes
        t["row"] = np.array([x[0] for x in items])
        t["text"] = [x[1] for x in items]
        t["y"] = np.array([classes.index(x[2]) for x in items])
        t["group"] = np.array([x[3] for x in items], dtype=np.uint64)
    return t


# ---- the split (services/cli/split.c) -----------------------------------------------

def cmapss_rul_cut(unit, n_cycles):
    h = fnv1a64(f"cmapss-cut-{unit}".encode())
    hi = min(n_cycles - 31, 145)
    if hi < 1:
        hi = max(n_cycles - 1, 0)
    lo = min(hi, 5)
    return lo + h % (hi - lo + 1)


FOLDS = 6  # services/cli/split.h CLI_SPLIT_FOLDS


def split(t, fold=0):
    """Part per row: 0 train, 1 validation, 2 test, 3 unused (C-MAPSS cycles after a cut).

    fold 1..5 (grouped tasks only) rotates the groups' places by 15 * fold percent before the
    70 / 15 / 15 cut: the six folds' test parts are disjoint (SPLITS.md, cross-validation)."""
    if fold and t["task"] in ("fraud", "fault-ai4i"):
        raise ValueError(f"{t['task']} is split by time: it has fold 0 only")
    n = len(t["y"])
    part = np.zeros(n, dtype=int)
    task = t["task"]
    if task in ("fraud", "fault-ai4i"):
        order = sorted(range(n), key=lambda i: (t["order"][i], i))
        n_train, n_trval = n * 70 // 100, n * 85 // 100
        for k, i in enumerate(order):
            part[i] = 0 if k < n_train else 1 if k < n_trval else 2
    elif task == "fault-cmapss":
        units = list(dict.fromkeys(t["unit"].tolist()))
        ranked = sorted(units, key=lambda u: (fnv1a64(str(u).encode()), u))
        nu = len(units)
        shift = nu * 15 * fold // 100
        upart = {u: (0 if r < nu * 70 // 100 else 1 if r < nu * 85 // 100 else 2)
                 for u, r in ((u, (k + shift) % nu) for k, u in enumerate(ranked))}
        ncyc = {u: int((t["unit"] == u).sum()) for u in units}
        t["cut"] = np.zeros(n)
        for i in range(n):
            u = int(t["unit"][i])
            last = ncyc[u] - (cmapss_rul_cut(u, ncyc[u]) if upart[u] != 0 else 0)
            t["cut"][i] = last
            part[i] = upart[u] if t["cycle"][i] <= last else 3
    else:
        part = np.array([0 if b < 70 else 1 if b < 85 else 2
                         for b in ((g % 100 + 15 * fold) % 100 for g in t["group"].tolist())])
    return part


def split_fixture_lines(task, t, part, fold=0):
    out = []
    key = task if fold == 0 else f"{task}/fold{fold}"
    for p, name in enumerate(PARTS):
        rows = [int(r) for r, q in zip(t["row"], part) if q == p]
        h = fnv1a64("".join(f"{r}," for r in rows).encode())
        out.append(f"{key} {name} {len(rows)} {h:016x}")
    return out


# ---- metrics ------------------------------------------------------------------------

def binary_metrics(y, s, threshold=None):
    from sklearn import metrics
    fpr, tpr, _ = metrics.roc_curve(y, s, drop_intermediate=False)
    m = {"pr_auc": metrics.average_precision_score(y, s), "roc_auc": metrics.roc_auc_score(y, s),
         "recall_at_1pct_fpr": float(tpr[fpr <= 0.01].max())}
    if threshold is not None:
        m["f1"] = metrics.f1_score(y, (s >= threshold).astype(int), zero_division=0)
        m["threshold"] = float(threshold)
    return m


def best_f1_threshold(y, s):
    """moe_metric_best_f1_threshold: the distinct score with the best F1, highest on ties."""
    order = np.argsort(-s, kind="stable")
    ss, yy = s[order], y[order]
    pos = yy.sum()
    best, thr, tp, fp, i = -1.0, ss[0], 0, 0, 0
    while i < len(ss):
        j = i
        while j < len(ss) and ss[j] == ss[i]:
            tp += yy[j]
            fp += 1 - yy[j]
            j += 1
        f = 2 * tp / (tp + fp + pos)
        if f > best:
            best, thr = f, ss[i]
        i = j
    return thr


def class_metrics(y, p):
    from sklearn import metrics
    return {"accuracy": metrics.accuracy_score(y, p), "macro_f1": metrics.f1_score(y, p, average="macro")}


def regression_metrics(y, p):
    d = p - y
    return {"rmse": float(np.sqrt(np.mean(d * d))), "mae": float(np.mean(np.abs(d))),
            "phm_score": float(np.sum(np.where(d < 0, np.expm1(-d / 13), np.expm1(d / 10))))}


# ---- models -------------------------------------------------------------------------

def run_tabular(t, part):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier
    X, y = t["X"].copy(), t["y"]
    if t["task"] == "fraud":
        X[:, -1] = np.log1p(X[:, -1])  # Amount is heavy-tailed; only the linear model cares
    tr, va, te = (part == 0), (part == 1), (part == 2)
    out = {}
    scaler = StandardScaler().fit(X[tr])
    lr = LogisticRegression(max_iter=5000, C=1.0).fit(scaler.transform(X[tr]), y[tr])
    pos = y[tr].sum()
    xgb = XGBClassifier(n_estimators=400, max_depth=4, learning_rate=0.05, subsample=0.8,
                        colsample_bytree=0.8, min_child_weight=1, tree_method="hist",
                        scale_pos_weight=1.0, random_state=SEED, n_jobs=2, eval_metric="aucpr")
    xgb.fit(X[tr], y[tr])
    del pos
    for name, score in (("logistic_regression", lambda Z: lr.predict_proba(scaler.transform(Z))[:, 1]),
                        ("xgboost", lambda Z: xgb.predict_proba(Z)[:, 1])):
        sv, st = score(X[va]), score(X[te])
        thr = best_f1_threshold(y[va], sv) if t["task"] == "fault-ai4i" else None
        out[name] = {"validation": binary_metrics(y[va], sv, thr), "test": binary_metrics(y[te], st, thr)}
    return out


CMAPSS_SENSORS = [2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21]  # the 7 others are flat in FD001


def cmapss_features(t, window=30):
    """Per row: cycle, and for each informative sensor the value, the mean and the slope over
    the last `window` cycles observed so far (fewer at the start of a run; None: all of them).

    Vectorised per engine with cumulative sums of v and j * v (j the row's index in its engine):
    a window [a, k] has sum S0[k+1] - S0[a] and least-squares slope
    (sum j v - (a + (L - 1) / 2) sum v) / (L (L^2 - 1) / 12) for its L cycles. The sums run over
    v minus the engine's first reading (the mean adds it back; the slope ignores it), so they
    stay small and the differences lose no precision worth a tree split."""
    raw, unit, cyc = t["raw"], t["unit"], t["cycle"]
    cols = [3 + s - 1 for s in CMAPSS_SENSORS]  # raw = 3 settings then 21 sensors
    ns = len(cols)
    feats = np.zeros((len(raw), 1 + 3 * ns))
    feats[:, 0] = cyc
    for u in np.unique(unit):
        idx = np.where(unit == u)[0]
        v = raw[idx][:, cols]
        d = v - v[0]
        k = np.arange(len(idx))
        a = np.zeros_like(k) if window is None else np.maximum(0, k - window + 1)
        L = (k - a + 1).astype(float)[:, None]
        zero = np.zeros((1, ns))
        s0 = np.vstack([zero, np.cumsum(d, axis=0)])
        s1 = np.vstack([zero, np.cumsum(k[:, None] * d, axis=0)])
        sw, sjw = s0[k + 1] - s0[a], s1[k + 1] - s1[a]
        sxy = sjw - (a[:, None] + (L - 1) / 2) * sw
        sxx = L * (L * L - 1) / 12
        slope = np.divide(sxy, sxx, out=np.zeros_like(sxy), where=L > 1)
        feats[idx, 1:] = np.hstack([v, sw / L + v[0], slope])
    return feats


def window_name(w):
    return "all" if w is None else w


def run_cmapss(t, part):
    """Ridge and XGBoost on cmapss_features; each model's history window is chosen from
    CMAPSS_WINDOWS by the validation RMSE (the test part is only scored). Returns the models'
    metrics (with "window") and every window's validation RMSE per model."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBRegressor
    y = t["y"]
    tr = part == 0
    ytr = np.minimum(y[tr], RUL_CAP)
    # Evaluation rows: the last observed cycle of each held-out engine.
    ev = {}
    for p in (1, 2):
        ev[p] = np.array([i for i in range(len(y)) if part[i] == p and t["cycle"][i] == t["cut"][i]])
    best, search = {}, {}
    for w in CMAPSS_WINDOWS:
        F = cmapss_features(t, w)
        scaler = StandardScaler().fit(F[tr])
        ridge = Ridge(alpha=1.0).fit(scaler.transform(F[tr]), ytr)
        xgb = XGBRegressor(n_estimators=400, max_depth=4, learning_rate=0.05, subsample=0.8,
                           colsample_bytree=0.8, tree_method="hist", random_state=SEED, n_jobs=2)
        xgb.fit(F[tr], ytr)
        for name, pred in (("ridge_regression", lambda Z: ridge.predict(scaler.transform(Z))),
                           ("xgboost", lambda Z: xgb.predict(Z))):
            m = {PARTS[p]: dict(regression_metrics(y[ev[p]], np.clip(pred(F[ev[p]]), 0, None)),
                                window=window_name(w), engines=int(len(ev[p]))) for p in (1, 2)}
            rmse = m["validation"]["rmse"]
            search.setdefault(name, {})[str(window_name(w))] = rmse
            if name not in best or rmse < best[name]["validation"]["rmse"]:  # ties: shorter
                best[name] = m
    return best, search


def run_text(t, part):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    text, y = t["text"], t["y"]
    idx = {p: [i for i in range(len(y)) if part[i] == p] for p in (0, 1, 2)}
    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 1), min_df=2, lowercase=True)
    Xtr = vec.fit_transform([text[i] for i in idx[0]])
    Xp = {p: vec.transform([text[i] for i in idx[p]]) for p in (1, 2)}
    # Balanced class weights (macro-F1 weighs rare classes like frequent ones); C is the one
    # setting chosen, by validation macro-F1. The test part is only scored.
    best = None
    for C in TEXT_C_GRID:
        lr = LogisticRegression(C=C, max_iter=5000, class_weight="balanced").fit(Xtr, y[idx[0]])
        f = class_metrics(y[idx[1]], lr.predict(Xp[1]))["macro_f1"]
        if best is None or f > best[0]:
            best = (f, C, lr)
    _, C, lr = best
    out = {"tfidf_logistic_regression": {}}
    for p in (1, 2):
        m = class_metrics(y[idx[p]], lr.predict(Xp[p]))
        m["C"] = C
        out["tfidf_logistic_regression"][PARTS[p]] = m
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.normpath(os.path.join(here, "../../../shared/data")))
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--split-fixture", metavar="OUT", help="write the split fixture and exit")
    ap.add_argument("--fold", type=int, default=0,
                    help="cross-validation fold 0..5 of the grouped tasks (0: the standard split)")
    args = ap.parse_args()
    if not 0 <= args.fold < FOLDS:
        sys.exit(f"baselines: --fold must be 0..{FOLDS - 1}, not {args.fold}")
    if not os.path.isdir(args.data):
        sys.exit(f"baselines: data directory {args.data} not found (expected ../shared/data)")
    tasks = args.tasks.split(",")
    for task in tasks:
        if task not in TASKS:
            sys.exit(f"baselines: unknown task {task!r}; known: {', '.join(TASKS)}")
    if args.split_fixture:
        lines = ["# task part rows fnv1a64-of-'row,row,...,' (bench/quality/baselines.py "
                 "--split-fixture; compared by tests/unit/cli/test-cli-dataset.c)"]
        for task in tasks:
            t = load(task, args.data)
            lines += split_fixture_lines(task, t, split(t))
            if task not in ("fraud", "fault-ai4i"):
                for fold in range(1, FOLDS):
                    lines += split_fixture_lines(task, t, split(t, fold), fold)
        with open(args.split_fixture, "w") as f:
            f.write("\n".join(lines) + "\n")
        return
    if args.fold:
        timed = [t for t in tasks if t in ("fraud", "fault-ai4i")]
        if timed:
            sys.exit(f"baselines: {', '.join(timed)} are split by time and have fold 0 only")
    results = {}
    for task in tasks:
        t0 = time.time()
        search = None
        t = load(task, args.data)
        part = split(t, args.fold)
        sizes = {PARTS[p]: int((part == p).sum()) for p in range(3)}
        if task in ("fraud", "fault-ai4i"):
            res = run_tabular(t, part)
        elif task == "fault-cmapss":
            res, search = run_cmapss(t, part)
        else:
            res = run_text(t, part)
        results[task] = {"rows": sizes, "models": res, "fold": args.fold}
        if "classes" in t:
            results[task]["classes"] = len(t["classes"])
        if search:
            results[task]["window_validation_rmse"] = search
        print(f"\n{task}  (rows train {sizes['train']}, validation {sizes['validation']}, "
              f"test {sizes['test']}; {time.time() - t0:.1f} s)")
        for model, parts in res.items():
            for pname in ("validation", "test"):
                m = parts[pname]
                cells = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in m.items())
                print(f"  {model:28s} {pname:10s}  {cells}")
        for model, by_w in (search or {}).items():
            cells = "  ".join(f"{w} {r:.2f}" for w, r in by_w.items())
            print(f"  {model:28s} validation rmse by window: {cells}")
    print(json.dumps(results, sort_keys=True, default=float))


if __name__ == "__main__":
    main()
