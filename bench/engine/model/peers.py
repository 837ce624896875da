#!/usr/bin/env python3
"""The model benchmark's Python half (run by bench/engine/model/run-model).

  peers.py make DIR    writes the benchmark's ~1M-parameter tabular MoE model (8 routed experts,
                       top-2, one shared expert, d_model 128, d_ff 288) as DIR/tabular-{f32,q8_0,
                       q4_0}.safetensors with the same random weights, and DIR/inputs.safetensors
                       (1024 rows), using the reference implementation in tests/golden/gen_golden.py;
                       plus a sensor model (q8_0 and f32) and a text model (q8_0) with their inputs.
  peers.py peers DIR   runs the same fp32 weights of the tabular and sensor models through PyTorch
                       (eager, fp32 and dynamic int8) and ONNX Runtime (fp32 and dynamic int8), one
                       thread each, at batch 1, 16 and 256, checks their scores against the
                       engine's (DIR/scores-<kind>-<quant>.bin), and prints one JSON object of
                       timings (tabular keys unprefixed, sensor keys prefixed "sensor_"). The text
                       model is timed by the engine only (its peers would need padded batches).

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
        # The sensor model also in fp32 (same weights) for the peers, which run tabular and sensor.
        for quant in (("q8_0", "f32") if kind == "sensor" else ("q8_0",)):
            c = dict(cfg, quant=quant, version=f"bench-{kind}-{quant}")
            m = gg.Model(c, np.random.default_rng(9))
            m.build_encoder()
            m.build_moe(bias_scale=0.05)
            m.build_head()
            gg.write_safetensors(os.path.join(out, f"{kind}-{quant}.safetensors"), m.t,
                                 {"config": json.dumps(c, separators=(",", ":"))})
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


# ---- the models as torch modules ------------------------------------------------------------

def tensor(t, name):
    return torch.from_numpy(t[name].copy())


def linear_from(t, prefix, bias):
    n, k = t[prefix + ".weight"].shape
    lin = nn.Linear(k, n, bias=bias)
    lin.weight.data = tensor(t, prefix + ".weight")
    if bias:
        lin.bias.data = tensor(t, prefix + ".bias")
    return lin


class Norm(nn.Module):
    def __init__(self, t, prefix, kind, eps=1e-5):
        super().__init__()
        self.kind, self.eps = kind, eps
        self.register_buffer("w", tensor(t, prefix + ".weight"))
        self.register_buffer("b", tensor(t, prefix + ".bias") if kind == "layernorm" else torch.zeros(0))

    def forward(self, x):
        if self.kind == "layernorm":
            return F.layer_norm(x, self.w.shape, self.w, self.b, self.eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w


class SwiGLU(nn.Module):
    def __init__(self, t, p):
        super().__init__()
        self.gate = linear_from(t, p + ".gate", False)
        self.up = linear_from(t, p + ".up", False)
        self.down = linear_from(t, p + ".down", False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class MoEBlock(nn.Module):
    """dense: every expert runs, unchosen ones weighted 0 (exportable to ONNX); else rows are
    grouped per expert (index, one matmul per active expert, index_add)."""

    def __init__(self, t, b, mc, norm, dense):
        super().__init__()
        self.dense, self.k, self.sigmoid = dense, mc["top_k"], mc["score"] == "sigmoid"
        self.normalize, self.scale = mc.get("normalize", True), mc.get("route_scale", 1.0)
        self.norm = Norm(t, f"moe.{b}.norm", norm)
        self.router = linear_from(t, f"moe.{b}.router", False)
        self.register_buffer("sel_bias", tensor(t, f"moe.{b}.router.bias"))
        self.experts = nn.ModuleList(SwiGLU(t, f"moe.{b}.expert.{e}") for e in range(mc["n_expert"]))
        self.shared = nn.ModuleList(SwiGLU(t, f"moe.{b}.shared.{s}") for s in range(mc["n_shared"]))

    def forward(self, h):
        u = self.norm(h)
        logits = self.router(u)
        s = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=-1)
        idx = torch.topk(s + self.sel_bias, self.k, dim=-1).indices
        g = torch.gather(s, 1, idx)
        if self.normalize:
            g = g / g.sum(dim=-1, keepdim=True)
        g = g * self.scale
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
        return h + y


class Net(nn.Module):
    """encoder -> MoE blocks -> head, for the tabular and sensor encoders."""

    def __init__(self, t, cfg, dense):
        super().__init__()
        enc, self.kind = cfg["encoder"], cfg["encoder"]["kind"]
        norm = cfg.get("norm", "rmsnorm")
        feats = enc["numeric"] if self.kind == "tabular" else enc["channels"]
        self.register_buffer("mean", torch.tensor([f["mean"] for f in feats], dtype=torch.float32))
        self.register_buffer("std", torch.tensor([f["std"] for f in feats], dtype=torch.float32))
        if self.kind == "tabular":
            self.embs = nn.ModuleList(nn.Embedding.from_pretrained(tensor(t, f"enc.cat.{i}.weight"))
                                      for i in range(len(enc["categorical"])))
        else:
            self.convs = nn.ModuleList()
            for i, c in enumerate(enc["conv"]):
                w = tensor(t, f"enc.conv.{i}.weight")
                conv = nn.Conv1d(w.shape[1], w.shape[0], w.shape[2], stride=c["stride"])
                conv.weight.data, conv.bias.data = w, tensor(t, f"enc.conv.{i}.bias")
                self.convs.append(conv)
            self.silu = enc.get("activation", "gelu") == "silu"
        self.enc_in = linear_from(t, "enc.in", True)
        self.blocks = nn.ModuleList(MoEBlock(t, b, mc, norm, dense) for b, mc in enumerate(cfg["moe"]))
        self.head_norm = Norm(t, "head.norm", norm)
        self.head = linear_from(t, "head", True)
        self.task = cfg["task"]["kind"]

    def forward(self, *x):
        if self.kind == "tabular":
            num, cat = x
            parts = [(num - self.mean) / self.std] + [e(cat[:, i]) for i, e in enumerate(self.embs)]
            h = self.enc_in(torch.cat(parts, dim=1))
        else:
            z = ((x[0] - self.mean) / self.std).transpose(1, 2)
            for conv in self.convs:
                z = F.silu(conv(z)) if self.silu else F.gelu(conv(z))
            h = self.enc_in(z.mean(dim=2))
        for blk in self.blocks:
            h = blk(h)
        y = self.head(self.head_norm(h))
        return torch.sigmoid(y) if self.task == "binary" else torch.softmax(y, dim=-1) if self.task == "multiclass" else y


def timeit(fn, inputs, b, min_time=0.3, repeats=3):
    n = inputs[0].shape[0]
    best = 1e30
    for rep in range(repeats + 1):
        done, at, t0 = 0, 0, time.perf_counter()
        while True:
            if at + b > n:
                at = 0
            fn(*[x[at:at + b] for x in inputs])
            at += b
            done += b
            t = time.perf_counter() - t0
            if t >= (min_time / 3 if rep == 0 else min_time):
                break
        if rep > 0:
            best = min(best, t / done)
    return best * 1e6


def peers_one(d, kind, res):
    """Times one model (tabular or sensor) through the peers; keys are prefixed by `kind`_ except
    for tabular, whose keys are the unprefixed headline ones."""
    pre = "" if kind == "tabular" else kind + "_"
    t, meta = read_safetensors(os.path.join(d, f"{kind}-f32.safetensors"))
    cfg = json.loads(meta["config"])
    inp, _ = read_safetensors(os.path.join(d, "inputs.safetensors" if kind == "tabular" else f"{kind}-inputs.safetensors"))
    if kind == "tabular":
        names, arrays = ["num", "cat"], [inp["numeric"].copy(), inp["categorical"].astype(np.int64)]
    else:
        names, arrays = ["window"], [inp["window"].copy()]
    tens = [torch.from_numpy(a) for a in arrays]
    sparse = Net(t, cfg, dense=False).eval()
    dense = Net(t, cfg, dense=True).eval()
    with torch.no_grad():
        ref = sparse(*tens).numpy().reshape(-1)
        res[pre + "dense_vs_sparse_max_abs"] = float(np.abs(dense(*tens).numpy().reshape(-1) - ref).max())
    for q in ("f32", "q8_0", "q4_0"):
        p = os.path.join(d, f"scores-{kind}-{q}.bin")
        if os.path.exists(p):
            res[f"{pre}ours_{q}_vs_pytorch_f32_max_abs"] = float(np.abs(np.fromfile(p, np.float32) - ref).max())
    qsparse = torch.quantization.quantize_dynamic(sparse, {nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        for name, m in (("pytorch_f32", sparse), ("pytorch_int8", qsparse)):
            for b in BATCHES:
                res[f"{pre}{name}_b{b}_us_per_row"] = timeit(m, tens, b)
        res[pre + "pytorch_int8_vs_f32_max_abs"] = float(np.abs(qsparse(*tens).numpy().reshape(-1) - ref).max())
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except Exception as e:  # noqa: BLE001
        res["onnxruntime_error"] = f"onnxruntime not importable: {e}"
        return
    f32_path, i8_path = os.path.join(d, f"{kind}-f32.onnx"), os.path.join(d, f"{kind}-int8.onnx")
    axes = {n: {0: "b"} for n in names}
    axes["p"] = {0: "b"}
    torch.onnx.export(dense, tuple(x[:2] for x in tens), f32_path, input_names=names, output_names=["p"],
                      dynamic_axes=axes, opset_version=14)
    quantize_dynamic(f32_path, i8_path, weight_type=QuantType.QInt8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    res["onnxruntime_version"] = ort.__version__
    for name, path in (("onnxruntime_f32", f32_path), ("onnxruntime_int8", i8_path)):
        s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        out = s.run(None, dict(zip(names, arrays)))[0].reshape(-1)
        res[f"{pre}{name}_vs_pytorch_f32_max_abs"] = float(np.abs(out - ref).max())
        for b in BATCHES:
            res[f"{pre}{name}_b{b}_us_per_row"] = timeit(lambda *x: s.run(None, dict(zip(names, x))), arrays, b)


def peers(d):
    torch.set_num_threads(1)
    res = {"onnx_formulation": "dense (every expert computed, unchosen zeroed)",
           "pytorch_formulation": "eager, rows grouped per expert"}
    for kind in ("tabular", "sensor"):
        peers_one(d, kind, res)
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
