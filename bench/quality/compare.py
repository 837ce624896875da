#!/usr/bin/env python3
"""Our shipped models beside the quality baselines, and inputs for timing a model.

The model cards in models/ print the baselines of bench/quality/run next to the figures stored
in a model file by `sluice train` (provenance.metrics, read with `sluice inspect --json`), so
that a reader sees at once whether a model beats the best baseline of its task on the held-out
test part. This script does that side by side, and also writes an inputs file in the layout
bench/engine/model/bench-engine-model reads, so that latency is measured by libmoe's own
benchmark rather than by a command whose time is mostly CSV parsing.

    compare.py table --sluice BIN --task T --baselines B.json [--fp32 M] --int8 M
        prints a Markdown table: every baseline, then ours in fp32 and int8, validation and
        test (B.json: the JSON line bench/quality/run prints last)
    compare.py inputs --sluice BIN --model M --out INPUTS.safetensors [--rows N] [--seed S]
        writes N rows of inputs for M: tabular rows drawn around each column's train mean and
        std, sensor windows likewise per channel, text rows of max_len random token ids
        (every note of both text data sets is longer than 128 pieces, so full length is the
        case that matters)

Standard library only (json, struct, random, subprocess), so it runs with any python3.
"""
import argparse
import json
import random
import struct
import subprocess
import sys

# The metric each task is judged by (the targets) and the others worth a column.
TASK_METRICS = {
    "fraud": ("pr_auc", ["pr_auc", "roc_auc", "recall_at_1pct_fpr"]),
    "fault-ai4i": ("pr_auc", ["pr_auc", "roc_auc", "f1"]),
    "fault-cmapss": ("rmse", ["rmse", "mae", "phm_score"]),
    "records-mtsamples": ("macro_f1", ["macro_f1", "accuracy"]),
    "records-abstracts": ("macro_f1", ["macro_f1", "accuracy"]),
}
LOWER_IS_BETTER = {"rmse", "mae", "phm_score"}


def inspect(sluice, model):
    out = subprocess.run([sluice, "inspect", model, "--json"], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


def model_metrics(info):
    m = info.get("metrics") or info["config"]["provenance"]["metrics"]
    return m["validation"], m["test"]


def fmt(key, v):
    if v is None:
        return "-"
    if key in LOWER_IS_BETTER:
        return "%.1f" % v if key != "phm_score" else "%.0f" % v
    return "%.3f" % v


def table(task, baselines, ours):
    """ours: list of (name, validation dict, test dict). Returns Markdown lines."""
    main, keys = TASK_METRICS[task]
    head = ["model"] + ["validation " + k for k in keys] + ["test " + k for k in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = []
    for name, parts in sorted(baselines[task]["models"].items()):
        rows.append(("baseline: " + name.replace("_", " "), parts["validation"], parts["test"]))
    rows += ours
    for name, val, test in rows:
        cells = [name] + [fmt(k, val.get(k)) for k in keys] + [fmt(k, test.get(k)) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def best_baseline(task, baselines, part):
    """(name, value) of the best baseline on `part` for the task's main metric."""
    main, _ = TASK_METRICS[task]
    pick = min if main in LOWER_IS_BETTER else max
    items = [(n, p[part][main]) for n, p in baselines[task]["models"].items()]
    return pick(items, key=lambda x: x[1])


def cmd_table(a):
    with open(a.baselines) as f:
        baselines = json.load(f)
    if a.task not in baselines:
        sys.exit("compare.py: %s has no task %r (it has %s)" % (a.baselines, a.task,
                                                                ", ".join(sorted(baselines))))
    ours = []
    if a.fp32:
        v, t = model_metrics(inspect(a.sluice, a.fp32))
        ours.append(("**ours, fp32**", v, t))
    v, t = model_metrics(inspect(a.sluice, a.int8))
    ours.append(("**ours, int8 (shipped)**", v, t))
    print("\n".join(table(a.task, baselines, ours)))


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype 'F32'|'I32', shape, flat list)."""
    header, blobs, off = {}, [], 0
    for name, dtype, shape, values in tensors:
        blob = struct.pack("<%d%s" % (len(values), "f" if dtype == "F32" else "i"), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def cmd_inputs(a):
    info = inspect(a.sluice, a.model)
    enc = info["config"]["encoder"]
    rng = random.Random(a.seed)
    n = a.rows
    if enc["kind"] == "tabular":
        num = enc.get("numeric", [])
        cat = enc.get("categorical", [])
        numeric = [rng.gauss(c["mean"], c["std"]) for _ in range(n) for c in num]
        categorical = [rng.randrange(len(c["vocab"])) for _ in range(n) for c in cat]
        # A zero-width tensor cannot be written; one column of zeros is never read.
        write_safetensors(a.out, [
            ("numeric", "F32", [n, max(len(num), 1)], numeric or [0.0] * n),
            ("categorical", "I32", [n, max(len(cat), 1)], categorical or [0] * n)])
    elif enc["kind"] == "sensor":
        ch, w = enc["channels"], enc["window"]
        window = [rng.gauss(c["mean"], c["std"]) for _ in range(n) for _ in range(w) for c in ch]
        write_safetensors(a.out, [("window", "F32", [n, w, len(ch)], window)])
    else:
        L, V = enc["max_len"], enc["vocab_size"]
        tokens = [rng.randrange(1, V) for _ in range(n) for _ in range(L)]
        write_safetensors(a.out, [("tokens", "I32", [n, L], tokens),
                                  ("n_tokens", "I32", [n], [L] * n)])
    print("wrote %s: %d rows for a %s encoder" % (a.out, n, enc["kind"]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table")
    t.add_argument("--sluice", required=True)
    t.add_argument("--task", required=True, choices=sorted(TASK_METRICS))
    t.add_argument("--baselines", required=True)
    t.add_argument("--fp32")
    t.add_argument("--int8", required=True)
    i = sub.add_parser("inputs")
    i.add_argument("--sluice", required=True)
    i.add_argument("--model", required=True)
    i.add_argument("--out", required=True)
    i.add_argument("--rows", type=int, default=512)
    i.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    cmd_table(a) if a.cmd == "table" else cmd_inputs(a)


if __name__ == "__main__":
    main()
