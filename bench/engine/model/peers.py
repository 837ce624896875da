#!/usr/bin/env python3
"""The model benchmark's Python half (run by bench/engine/model/run-model).

  peers.py make DIR    writes the benchmark's ~1M-parameter tabular MoE model (8 routed experts,
                       top-2, one shared expert, d_model 128, d_ff 288) as DIR/tabular-{f32,q8_0,
                       q4_0}.safetensors with the same random weights, and DIR/inputs.safetensors
                       (1024 rows), using the reference implementation in tests/golden/gen_golden.py;
                       plus a sensor and a text model (q8_0) with their inputs, for the engine only.
  peers.py peers DIR   runs the same fp32 weights through PyTorch (eager, fp32 and dynamic int8)
                       and ONNX Runtime (fp32 and dynamic int8), one thread each, at batch 1, 16
                       and 256, checks their scores against the engine's (DIR/scores-*.bin), and
                       prints one JSON object of timings.

How the peers run the MoE: PyTorch eager groups rows by expert (index_select, one matmul per
active expert, index_add), as Hugging Face's MoE layers do. ONNX has no data-dependent
control flow that exporters emit for this, so the ONNX graph computes every expert densely and
zeroes the unchosen ones (the usual ONNX export of a MoE layer); at batch 1 that is 9 expert
FFNs instead of 3. Both are given as they would be deployed; the JSON says which is which.
"""
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
import gen_golden as gg  # noqa: E402

N_ROWS = 1024
BATCHES = (1, 16, 256)


def bench_config(quant):
    cats = [("mcc", 400, 8), ("country", 60, 4), ("channel", 8, 4), ("merchant_bucket", 1000, 8)]
    return {"format": "sluice-moe", "format_version": 1, "version": f"bench-tabular-{quant}",
            "provenance": {"generator": "bench/engine/model/peers.py", "random_weights": True},
            "quant": quant, "d_model": 128, "norm": "rmsnorm",
            "encoder": {"kind": "tabular",
                        "numeric": [{"name": f"f{i}", "mean": 0.5 * i, "std": 1.0 + 0.25 * i} for i in range(24)],
                        "categorical": [{"name": n, "vocab": [f"{n}{j}" for j in range(v)], "dim": d}
                                        for n, v, d in cats]},
            "moe": [{"n_expert": 8, "top_k": 2, "n_shared": 1, "d_ff": 288, "score": "softmax"}],
            "task": {"kind": "binary", "labels": ["legit", "fraud"]}}


def other_configs():
    """Bench-sized sensor and text models (timed by the engine only; the peers run tabular)."""
    moe = [{"n_expert": 8, "top_k": 2, "n_shared": 1, "d_ff": 256, "score": "sigmoid"}]
    base = {"format": "sluice-moe", "format_version": 1, "quant": "q8_0", "d_model": 128, "moe": moe,
            "provenance": {"generator": "bench/engine/model/peers.py", "random_weights": True}}
    sensor = dict(base, version="bench-sensor-q8_0", norm="layernorm", encoder={
        "kind": "sensor", "window": 128,
        "channels": [{"name": f"c{i}", "mean": 0.0, "std": 1.0} for i in range(8)],
        "conv": [{"out": 32, "kernel": 5, "stride": 2}, {"out": 64, "kernel": 5, "stride": 2},
                 {"out": 64, "kernel": 3, "stride": 2}]},
        task={"kind": "multiclass", "labels": ["ok", "bearing", "overheat", "imbalance"]})
    text = dict(base, version="bench-text-q8_0", norm="rmsnorm", encoder={
        "kind": "text", "vocab_size": 8000, "max_len": 256, "n_layer": 2, "n_head": 4, "d_ff": 256,
        "window": [64, 256], "n_global": 1},
        task={"kind": "multiclass", "labels": ["a", "b", "c"]})
    return {"sensor": sensor, "text": text}


def make(out):
    os.makedirs(out, exist_ok=True)
    for quant in ("f32", "q8_0", "q4_0"):
        cfg = bench_config(quant)
        m = gg.Model(cfg, np.random.default_rng(7))
        m.build_encoder()
        m.build_moe(bias_scale=0.05)
        m.build_head()
        gg.write_safetensors(os.path.join(out, f"tabular-{quant}.safetensors"), m.t,
                             {"config": json.dumps(cfg, separators=(",", ":"))})
    inputs = gg.make_inputs(bench_config("f32"), np.random.default_rng(8), N_ROWS)
    gg.write_safetensors(os.path.join(out, "inputs.safetensors"), inputs)
    for kind, cfg in other_configs().items():
        m = gg.Model(cfg, np.random.default_rng(9))
        m.build_encoder()
        m.build_moe(bias_scale=0.05)
        m.build_head()
        gg.write_safetensors(os.path.join(out, f"{kind}-q8_0.safetensors"), m.t,
                             {"config": json.dumps(cfg, separators=(",", ":"))})
        gg.write_safetensors(os.path.join(out, f"{kind}-inputs.safetensors"),
                             gg.make_inputs(cfg, np.random.default_rng(10), 512))


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    dt = {"F32": np.float32, "I32": np.int32, "I8": np.int8, "U8": np.uint8}
    data = raw[8 + n:]
    out = {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], dt[v["dtype"]]).reshape(v["shape"])
           for k, v in header.items()}
    return out, meta


# ---- the model as a torch module ------------------------------------------------------------

def rms(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


class SwiGLU(nn.Module):
    def __init__(self, t, p):
        super().__init__()
        d_ff, d = t[p + ".gate.weight"].shape
        self.gate = nn.Linear(d, d_ff, bias=False)
        self.up = nn.Linear(d, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d, bias=False)
        for name in ("gate", "up", "down"):
            getattr(self, name).weight.data = torch.from_numpy(t[f"{p}.{name}.weight"].copy())

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class TabularMoE(nn.Module):
    def __init__(self, t, cfg, dense):
        super().__init__()
        enc, mc = cfg["encoder"], cfg["moe"][0]
        self.dense, self.k = dense, mc["top_k"]
        self.register_buffer("mean", torch.tensor([f["mean"] for f in enc["numeric"]], dtype=torch.float32))
        self.register_buffer("std", torch.tensor([f["std"] for f in enc["numeric"]], dtype=torch.float32))
        self.embs = nn.ModuleList()
        for i in range(len(enc["categorical"])):
            w = torch.from_numpy(t[f"enc.cat.{i}.weight"].copy())
            self.embs.append(nn.Embedding.from_pretrained(w))
        self.enc_in = nn.Linear(*t["enc.in.weight"].shape[::-1])
        self.enc_in.weight.data = torch.from_numpy(t["enc.in.weight"].copy())
        self.enc_in.bias.data = torch.from_numpy(t["enc.in.bias"].copy())
        self.register_buffer("norm_w", torch.from_numpy(t["moe.0.norm.weight"].copy()))
        self.router = nn.Linear(cfg["d_model"], mc["n_expert"], bias=False)
        self.router.weight.data = torch.from_numpy(t["moe.0.router.weight"].copy())
        self.register_buffer("sel_bias", torch.from_numpy(t["moe.0.router.bias"].copy()))
        self.experts = nn.ModuleList(SwiGLU(t, f"moe.0.expert.{e}") for e in range(mc["n_expert"]))
        self.shared = nn.ModuleList(SwiGLU(t, f"moe.0.shared.{s}") for s in range(mc["n_shared"]))
        self.register_buffer("head_norm_w", torch.from_numpy(t["head.norm.weight"].copy()))
        self.head = nn.Linear(cfg["d_model"], 1)
        self.head.weight.data = torch.from_numpy(t["head.weight"].copy())
        self.head.bias.data = torch.from_numpy(t["head.bias"].copy())

    def forward(self, num, cat):
        parts = [(num - self.mean) / self.std] + [e(cat[:, i]) for i, e in enumerate(self.embs)]
        h = self.enc_in(torch.cat(parts, dim=1))
        u = rms(h, self.norm_w)
        s = torch.softmax(self.router(u), dim=-1)
        idx = torch.topk(s + self.sel_bias, self.k, dim=-1).indices
        g = torch.gather(s, 1, idx)
        g = g / g.sum(dim=-1, keepdim=True)
        if self.dense:
            w = torch.zeros_like(s).scatter(1, idx, g)
            y = sum(w[:, e:e + 1] * ex(u) for e, ex in enumerate(self.experts))
        else:
            y = torch.zeros_like(h)
            for e, ex in enumerate(self.experts):
                rows, slot = torch.where(idx == e)
                if rows.numel():
                    y.index_add_(0, rows, g[rows, slot, None] * ex(u[rows]))
        for sh in self.shared:
            y = y + sh(u)
        h = h + y
        return torch.sigmoid(self.head(rms(h, self.head_norm_w)))


def timeit(fn, num, cat, b, min_time=0.3, repeats=3):
    n = num.shape[0]
    best = 1e30
    for rep in range(repeats + 1):
        done, at, t0 = 0, 0, time.perf_counter()
        while True:
            if at + b > n:
                at = 0
            fn(num[at:at + b], cat[at:at + b])
            at += b
            done += b
            t = time.perf_counter() - t0
            if t >= (min_time / 3 if rep == 0 else min_time):
                break
        if rep > 0:
            best = min(best, t / done)
    return best * 1e6


def peers(d):
    torch.set_num_threads(1)
    t, meta = read_safetensors(os.path.join(d, "tabular-f32.safetensors"))
    cfg = json.loads(meta["config"])
    inp, _ = read_safetensors(os.path.join(d, "inputs.safetensors"))
    num_np, cat_np = inp["numeric"].copy(), inp["categorical"].astype(np.int64)
    num, cat = torch.from_numpy(num_np), torch.from_numpy(cat_np)
    res = {"onnx_formulation": "dense (every expert computed, unchosen zeroed)",
           "pytorch_formulation": "eager, rows grouped per expert"}
    sparse = TabularMoE(t, cfg, dense=False).eval()
    dense = TabularMoE(t, cfg, dense=True).eval()
    with torch.no_grad():
        ref = sparse(num, cat).numpy()[:, 0]
        res["dense_vs_sparse_max_abs"] = float(np.abs(dense(num, cat).numpy()[:, 0] - ref).max())
    for q in ("f32", "q8_0", "q4_0"):
        p = os.path.join(d, f"scores-{q}.bin")
        if os.path.exists(p):
            ours = np.fromfile(p, np.float32)
            res[f"ours_{q}_vs_pytorch_f32_max_abs"] = float(np.abs(ours - ref).max())

    qsparse = torch.quantization.quantize_dynamic(sparse, {nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        for name, m in (("pytorch_f32", sparse), ("pytorch_int8", qsparse)):
            for b in BATCHES:
                res[f"{name}_b{b}_us_per_row"] = timeit(lambda x, c: m(x, c), num, cat, b)
        res["pytorch_int8_vs_f32_max_abs"] = float(np.abs(qsparse(num, cat).numpy()[:, 0] - ref).max())
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except Exception as e:  # noqa: BLE001
        res["onnxruntime_error"] = f"onnxruntime not importable: {e}"
        return res
    f32_path, i8_path = os.path.join(d, "tabular-f32.onnx"), os.path.join(d, "tabular-int8.onnx")
    torch.onnx.export(dense, (num[:2], cat[:2]), f32_path, input_names=["num", "cat"], output_names=["p"],
                      dynamic_axes={"num": {0: "b"}, "cat": {0: "b"}, "p": {0: "b"}}, opset_version=14)
    quantize_dynamic(f32_path, i8_path, weight_type=QuantType.QInt8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    res["onnxruntime_version"] = ort.__version__
    for name, path in (("onnxruntime_f32", f32_path), ("onnxruntime_int8", i8_path)):
        s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        out = s.run(None, {"num": num_np, "cat": cat_np})[0][:, 0]
        res[f"{name}_vs_pytorch_f32_max_abs"] = float(np.abs(out - ref).max())
        for b in BATCHES:
            res[f"{name}_b{b}_us_per_row"] = timeit(lambda x, c: s.run(None, {"num": x, "cat": c}), num_np, cat_np, b)
    return res


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "peers"):
        sys.exit("usage: peers.py make|peers DIR")
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        print(json.dumps(peers(sys.argv[2])))


if __name__ == "__main__":
    main()
