#!/usr/bin/python3
"""PyTorch agreement fixtures for libmoe's trainer (engine/src/trainer): an independent float64
autograd implementation of the models of engine/MODEL_FORMAT.md (tabular, sensor and text encoders), trained for a few
steps on fixed batches with the trainer's recipe:

  loss (class-weighted BCE | cross-entropy with label smoothing | Huber) + the auxiliary balance
  loss alpha * sum_i f_i P_i per MoE block (f_i = E / (K m) * rows routed to i, a constant;
  P_i = mean over rows of the scores normalised to sum 1), gradient clipping by global norm
  (torch.nn.utils.clip_grad_norm_), torch.optim.AdamW with weight decay on tensors of 2 or more dimensions only and
  the learning rate of each step set to linear warmup then cosine decay, then the selection
  bias update bias_i += gamma * sign(mean load - load_i) outside the gradient.

Run with Debian's python3 (python3-torch 1.13):  /usr/bin/python3 tests/golden/train/gen_train_golden.py [case ...]
For each case it writes tests/golden/train/fixtures/<case>.init.safetensors (the initial fp32
model file, which the C test loads with moe_trainer_load) and <case>.io.safetensors: the batches
("numeric" (S, m, n_num), "categorical" (S, m, n_cat), "window" (S, m, T, C) and, for the summary
pool, "n_steps" (S, m), "tokens" / "n_tokens", "label" (S, m) or "target" (S, m, n_t)),
"loss" (S) the loss of each step before its update, and "final.<tensor>" the parameters after
the S steps, with the options as JSON in __metadata__["opts"].

Each case's seed is chosen so that no row's top-k choice is within ROUTE_MARGIN of a tie at any
step: float32 (C) and float64 (here) must make the same discrete choices. Deterministic.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from gen_golden import write_safetensors  # noqa: E402  (the hand-written safetensors writer)

OUT = os.path.join(HERE, "fixtures")
ROUTE_MARGIN = 1e-3
STEPS = 6
ROWS = 16
torch.set_default_dtype(torch.float64)


def base_config(name, norm, moe, task, d_model=8):
    return {"format": "sluice-moe", "format_version": 1, "version": f"train-golden-{name}",
            "provenance": {"generator": "tests/golden/train/gen_train_golden.py"},
            "quant": "f32", "d_model": d_model, "norm": norm,
            "encoder": {"kind": "tabular",
                        "numeric": [{"name": f"x{i}", "mean": 0.5 * i, "std": 1.0 + 0.5 * i} for i in range(4)],
                        "categorical": [{"name": "mcc", "vocab": ["<unk>", "a", "b", "c", "d"], "dim": 3},
                                        {"name": "cc", "vocab": ["<unk>", "de", "fr"], "dim": 2}]},
            "moe": moe, "task": task}


def sensor_config(name):
    c = base_config(name, "layernorm",
                    [{"n_expert": 4, "top_k": 2, "n_shared": 1, "d_ff": 6, "score": "softmax"}],
                    {"kind": "multiclass", "labels": ["ok", "bearing", "heat"]})
    c["encoder"] = {"kind": "sensor", "window": 10,
                    "channels": [{"name": "temp", "mean": 60.0, "std": 5.0}, {"name": "vib", "mean": 0.0, "std": 2.0}],
                    "conv": [{"out": 4, "kernel": 3, "stride": 1}, {"out": 6, "kernel": 3, "stride": 2}],
                    "activation": "gelu"}
    return c


def sensor_summary_config(name):
    """Pool "summary" (MODEL_FORMAT.md) after a stride-2 conv stack (12 -> 10 -> 4 steps), on rows
    with observed steps n_steps (io "n_steps"): 0 (all), 1, partial counts and the window."""
    c = base_config(name, "rmsnorm",
                    [{"n_expert": 4, "top_k": 2, "n_shared": 1, "d_ff": 6, "score": "sigmoid"}],
                    {"kind": "regression", "labels": ["rul", "health"]})
    c["encoder"] = {"kind": "sensor", "window": 12,
                    "channels": [{"name": "temp", "mean": 60.0, "std": 5.0}, {"name": "vib", "mean": 0.0, "std": 2.0}],
                    "conv": [{"out": 4, "kernel": 3, "stride": 1}, {"out": 5, "kernel": 3, "stride": 2}],
                    "activation": "silu", "pool": "summary"}
    return c


def text_config(name):
    c = base_config(name, "rmsnorm",
                    [{"n_expert": 4, "top_k": 2, "n_shared": 1, "d_ff": 6, "score": "sigmoid", "route_scale": 1.5}],
                    {"kind": "binary", "labels": ["routine", "urgent"]})
    c["encoder"] = {"kind": "text", "vocab_size": 20, "max_len": 8, "n_layer": 2, "n_head": 2, "d_ff": 6,
                    "window": [2, 4], "n_global": 1}
    return c


CASES = {
    "binary-bce": (
        base_config("binary-bce", "rmsnorm",
                    [{"n_expert": 4, "top_k": 2, "n_shared": 1, "d_ff": 6, "score": "softmax"},
                     {"n_expert": 4, "top_k": 2, "n_shared": 1, "d_ff": 5, "score": "sigmoid",
                      "normalize": False, "route_scale": 1.5}],
                    {"kind": "binary", "labels": ["legit", "fraud"]}),
        {"loss": "bce", "pos_weight": 2.0}),
    "multiclass-ce": (
        base_config("multiclass-ce", "layernorm",
                    [{"n_expert": 3, "top_k": 2, "n_shared": 1, "d_ff": 4, "score": "sigmoid", "route_scale": 2.0}],
                    {"kind": "multiclass", "labels": ["a", "b", "c"]}),
        {"loss": "ce", "label_smoothing": 0.1}),
    "regression-huber": (
        base_config("regression-huber", "rmsnorm",
                    [{"n_expert": 4, "top_k": 1, "n_shared": 0, "d_ff": 6, "score": "softmax"}],
                    {"kind": "regression", "labels": ["y1", "y2"]}),
        {"loss": "huber", "huber_delta": 0.5}),
    "sensor-ce": (sensor_config("sensor-ce"), {"loss": "ce", "label_smoothing": 0.0}),
    "text-bce": (text_config("text-bce"), {"loss": "bce", "pos_weight": 1.0}),
    "sensor-summary-huber": (sensor_summary_config("sensor-summary-huber"), {"loss": "huber", "huber_delta": 0.5}),
}

COMMON_OPTS = {"lr": 0.01, "min_lr": 0.001, "warmup_steps": 2, "total_steps": STEPS, "beta1": 0.9,
               "beta2": 0.99, "adam_eps": 1e-8, "weight_decay": 0.05, "clip_norm": 0.5, "bias_gamma": 0.01,
               "balance_alpha": 0.02}


def lr_at(o, t):
    if t < o["warmup_steps"]:
        return o["lr"] * (t + 1) / o["warmup_steps"]
    prog = min(1.0, (t - o["warmup_steps"]) / (o["total_steps"] - o["warmup_steps"]))
    return o["min_lr"] + (o["lr"] - o["min_lr"]) * 0.5 * (1 + math.cos(math.pi * prog))


class Model:
    def __init__(self, cfg, rng):
        self.cfg = cfg
        d = cfg["d_model"]
        enc = cfg["encoder"]
        ln = cfg["norm"] == "layernorm"
        P = {}

        def lin(name, n, k, bias):
            P[name + ".weight"] = rng.standard_normal((n, k)) / np.sqrt(k)
            if bias:
                P[name + ".bias"] = 0.1 * rng.standard_normal(n)

        def norm(name):
            P[name + ".weight"] = 1 + 0.1 * rng.standard_normal(d)
            if ln:
                P[name + ".bias"] = 0.1 * rng.standard_normal(d)

        if enc["kind"] == "tabular":
            d_in = len(enc["numeric"])
            for i, c in enumerate(enc["categorical"]):
                P[f"enc.cat.{i}.weight"] = rng.standard_normal((len(c["vocab"]), c["dim"]))
                d_in += c["dim"]
            lin("enc.in", d, d_in, True)
        elif enc["kind"] == "sensor":
            c_in = len(enc["channels"])
            for i, c in enumerate(enc["conv"]):
                P[f"enc.conv.{i}.weight"] = rng.standard_normal((c["out"], c_in, c["kernel"])) / np.sqrt(c_in * c["kernel"])
                P[f"enc.conv.{i}.bias"] = 0.1 * rng.standard_normal(c["out"])
                c_in = c["out"]
            lin("enc.in", d, 3 * c_in if enc.get("pool") == "summary" else c_in, True)
        else:
            P["enc.tok.weight"] = rng.standard_normal((enc["vocab_size"], d))
            P["enc.pos.weight"] = 0.3 * rng.standard_normal((enc["max_len"], d))
            for l in range(enc["n_layer"]):
                p = f"enc.layer.{l}"
                norm(p + ".attn_norm")
                lin(p + ".attn.qkv", 3 * d, d, False)
                lin(p + ".attn.out", d, d, False)
                norm(p + ".ffn_norm")
                lin(p + ".ffn.gate", enc["d_ff"], d, False)
                lin(p + ".ffn.up", enc["d_ff"], d, False)
                lin(p + ".ffn.down", d, enc["d_ff"], False)
            norm("enc.norm")
        self.bias = []
        for b, mc in enumerate(cfg["moe"]):
            norm(f"moe.{b}.norm")
            lin(f"moe.{b}.router", mc["n_expert"], d, False)
            for kind, n in (("expert", mc["n_expert"]), ("shared", mc["n_shared"])):
                for e in range(n):
                    p = f"moe.{b}.{kind}.{e}"
                    lin(p + ".gate", mc["d_ff"], d, False)
                    lin(p + ".up", mc["d_ff"], d, False)
                    lin(p + ".down", d, mc["d_ff"], False)
            self.bias.append(0.05 * rng.standard_normal(mc["n_expert"]))
        norm("head.norm")
        n_out = 1 if cfg["task"]["kind"] == "binary" else len(cfg["task"]["labels"])
        lin("head", n_out, d, True)
        # Round to float32 first: the C side starts from exactly these values.
        self.P = {k: torch.tensor(v.astype(np.float32).astype(np.float64), requires_grad=True) for k, v in P.items()}
        self.bias = [b.astype(np.float32).astype(np.float64) for b in self.bias]

    def norm(self, x, name):
        w = self.P[name + ".weight"]
        eps = self.cfg.get("norm_eps", 1e-5)
        if self.cfg["norm"] == "layernorm":
            return F.layer_norm(x, (x.shape[-1],), w, self.P[name + ".bias"], eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def ffn(self, p, x):
        P = self.P
        return F.linear(F.silu(F.linear(x, P[p + ".gate.weight"])) * F.linear(x, P[p + ".up.weight"]),
                        P[p + ".down.weight"])

    def attention(self, qkv, n, window):
        enc = self.cfg["encoder"]
        d, nh, g = self.cfg["d_model"], enc["n_head"], enc["n_global"]
        dh = d // nh
        q, k, v = qkv[:, :d], qkv[:, d:2 * d], qkv[:, 2 * d:]
        i = torch.arange(n)[:, None]
        j = torch.arange(n)[None, :]
        allowed = ((i - j).abs() <= window // 2) | (i < g) | (j < g)
        outs = []
        for hd in range(nh):
            sc = q[:, hd * dh:(hd + 1) * dh] @ k[:, hd * dh:(hd + 1) * dh].T / np.sqrt(dh)
            sc = sc.masked_fill(~allowed, float("-inf"))
            outs.append(torch.softmax(sc, dim=-1) @ v[:, hd * dh:(hd + 1) * dh])
        return torch.cat(outs, dim=1)

    def first_pooled(self, n):
        """The first of the last conv layer's steps whose inputs were all observed, when the window's
        last n steps were (0: all): output step s of a layer reads its input steps s * stride onwards;
        at least the last step."""
        enc = self.cfg["encoder"]
        t = enc["window"]
        first = t - n if 0 < n < t else 0
        for c in enc["conv"]:
            t_out = (t - c["kernel"]) // c["stride"] + 1
            first = min(-(-first // c["stride"]), t_out - 1)
            t = t_out
        return first

    def summary(self, x, n_steps):
        """x (m, C, t) -> (m, 3C): [last, mean, (t - 1) * least-squares slope] over each row's pooled steps."""
        t = x.shape[2]
        rows = []
        for r in range(x.shape[0]):
            first = self.first_pooled(int(n_steps[r]) if n_steps is not None else 0)
            xs = x[r, :, first:]
            s = torch.arange(first, t, dtype=torch.float64)
            if xs.shape[1] > 1:
                sc = s - s.mean()
                slope = ((xs - xs.mean(dim=1, keepdim=True)) * sc).sum(dim=1) / (sc * sc).sum()
            else:
                slope = torch.zeros(x.shape[1])
            rows.append(torch.cat([x[r, :, t - 1], xs.mean(dim=1), (t - 1) * slope]))
        return torch.stack(rows)

    def encode(self, inp):
        P, enc = self.P, self.cfg["encoder"]
        if enc["kind"] == "tabular":
            num, cat = inp["numeric"], inp["categorical"]
            mean = torch.tensor([f["mean"] for f in enc["numeric"]])
            std = torch.tensor([f["std"] for f in enc["numeric"]])
            parts = [(torch.from_numpy(num.astype(np.float64)) - mean) / std]
            for i in range(len(enc["categorical"])):
                parts.append(P[f"enc.cat.{i}.weight"][torch.from_numpy(cat[:, i].astype(np.int64))])
            return F.linear(torch.cat(parts, 1), P["enc.in.weight"], P["enc.in.bias"])
        if enc["kind"] == "sensor":
            mean = torch.tensor([c["mean"] for c in enc["channels"]])
            std = torch.tensor([c["std"] for c in enc["channels"]])
            x = ((torch.from_numpy(inp["window"].astype(np.float64)) - mean) / std).transpose(1, 2)
            for i, c in enumerate(enc["conv"]):
                x = F.conv1d(x, P[f"enc.conv.{i}.weight"], P[f"enc.conv.{i}.bias"], stride=c["stride"])
                x = F.silu(x) if enc.get("activation", "gelu") == "silu" else F.gelu(x)
            if enc.get("pool") == "summary":
                return F.linear(self.summary(x, inp.get("n_steps")), P["enc.in.weight"], P["enc.in.bias"])
            return F.linear(x.mean(dim=2), P["enc.in.weight"], P["enc.in.bias"])
        out = []
        for r in range(inp["tokens"].shape[0]):
            n = int(inp["n_tokens"][r])
            ids = torch.from_numpy(inp["tokens"][r, :n].astype(np.int64))
            h = P["enc.tok.weight"][ids] + P["enc.pos.weight"][:n]
            for l in range(enc["n_layer"]):
                p = f"enc.layer.{l}"
                a = self.norm(h, p + ".attn_norm")
                qkv = F.linear(a, P[p + ".attn.qkv.weight"])
                h = h + F.linear(self.attention(qkv, n, enc["window"][l]), P[p + ".attn.out.weight"])
                h = h + self.ffn(p + ".ffn", self.norm(h, p + ".ffn_norm"))
            out.append(self.norm(h, "enc.norm").mean(dim=0))
        return torch.stack(out)

    def forward(self, inp, alpha):
        """Returns logits, the balance loss, per block counts and the smallest routing margin."""
        P = self.P
        h = self.encode(inp)
        m = h.shape[0]
        aux = torch.zeros(())
        counts, margin = [], float("inf")
        for b, mc in enumerate(self.cfg["moe"]):
            E, K = mc["n_expert"], mc["top_k"]
            u = self.norm(h, f"moe.{b}.norm")
            logits = F.linear(u, P[f"moe.{b}.router.weight"])
            s = torch.softmax(logits, -1) if mc["score"] == "softmax" else torch.sigmoid(logits)
            sel = s.detach() + torch.from_numpy(self.bias[b])
            sv, order = torch.sort(sel, dim=1, descending=True, stable=True)
            if K < E:
                margin = min(margin, float((sv[:, K - 1] - sv[:, K]).min()))
            ids = order[:, :K]
            g = s.gather(1, ids)
            if mc.get("normalize", True):
                g = g / g.sum(1, keepdim=True)
            g = g * mc.get("route_scale", 1.0)
            rows = []
            for r in range(m):
                y = torch.zeros(h.shape[1])
                for j in range(K):
                    y = y + g[r, j] * self.ffn(f"moe.{b}.expert.{int(ids[r, j])}", u[r:r + 1])[0]
                rows.append(y)
            y = torch.stack(rows)
            for sh in range(mc["n_shared"]):
                y = y + self.ffn(f"moe.{b}.shared.{sh}", u)
            count = torch.bincount(ids.flatten(), minlength=E).numpy()
            counts.append(count)
            if alpha > 0:
                f = torch.from_numpy(E / (K * m) * count.astype(np.float64))
                aux = aux + alpha * (f * (s / s.sum(1, keepdim=True)).mean(0)).sum()
            h = h + y
        z = self.norm(h, "head.norm")
        return F.linear(z, P["head.weight"], P["head.bias"]), aux, counts, margin


def loss_of(kind, o, logits, lab, tgt):
    if kind == "binary":
        return F.binary_cross_entropy_with_logits(logits[:, 0], torch.from_numpy(lab.astype(np.float64)),
                                                  pos_weight=torch.tensor(o["pos_weight"]))
    if kind == "multiclass":
        return F.cross_entropy(logits, torch.from_numpy(lab.astype(np.int64)), label_smoothing=o["label_smoothing"])
    return F.huber_loss(logits, torch.from_numpy(tgt.astype(np.float64)), delta=o["huber_delta"])


def run(name, cfg, extra, seed):
    o = dict(COMMON_OPTS, **extra)
    rng = np.random.default_rng(seed)
    model = Model(cfg, rng)
    enc, kind = cfg["encoder"], cfg["task"]["kind"]
    io = {}
    if enc["kind"] == "tabular":
        n_num = len(enc["numeric"])
        io["numeric"] = np.stack([(0.5 * i + (1 + 0.5 * i) * rng.standard_normal((STEPS, ROWS))) for i in range(n_num)],
                                 axis=-1).astype(np.float32)
        io["categorical"] = np.stack([rng.integers(0, len(c["vocab"]), (STEPS, ROWS)) for c in enc["categorical"]],
                                     axis=-1).astype(np.int32)
    elif enc["kind"] == "sensor":
        mean = np.array([c["mean"] for c in enc["channels"]])
        std = np.array([c["std"] for c in enc["channels"]])
        io["window"] = (mean + std * rng.standard_normal((STEPS, ROWS, enc["window"], len(mean)))).astype(np.float32)
        if enc.get("pool") == "summary":
            # Each batch: all (0), one step, the whole window, and random partial counts.
            T = enc["window"]
            n = rng.integers(2, T, (STEPS, ROWS))
            n[:, 0], n[:, 1], n[:, 2] = 0, 1, T
            io["n_steps"] = n.astype(np.int32)
    else:
        lens = rng.integers(1, enc["max_len"] + 1, (STEPS, ROWS)).astype(np.int32)
        toks = rng.integers(2, enc["vocab_size"], (STEPS, ROWS, enc["max_len"])).astype(np.int32)
        toks[:, :, 0] = 1
        io["tokens"], io["n_tokens"] = toks, lens
    n_lab = len(cfg["task"]["labels"])
    lab = rng.integers(0, 2 if kind == "binary" else n_lab, (STEPS, ROWS)).astype(np.int32)
    tgt = rng.standard_normal((STEPS, ROWS, n_lab)).astype(np.float32)
    init = {k: v.detach().numpy().astype(np.float32) for k, v in model.P.items()}
    for b, bias in enumerate(model.bias):
        init[f"moe.{b}.router.bias"] = bias.astype(np.float32)
    decay = [p for k, p in model.P.items() if p.dim() >= 2]
    no_decay = [p for k, p in model.P.items() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["adam_eps"])
    losses, margin = [], float("inf")
    for t in range(STEPS):
        logits, aux, counts, mg = model.forward({k: v[t] for k, v in io.items()}, o["balance_alpha"])
        margin = min(margin, mg)
        loss = loss_of(kind, o, logits, lab[t], tgt[t]) + aux
        opt.zero_grad()
        loss.backward()
        # A tensor the step did not reach (an expert no row chose) has a zero gradient, as in C:
        # AdamW still decays it and advances its moments; with grad None torch would skip it.
        for p in model.P.values():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        torch.nn.utils.clip_grad_norm_(list(model.P.values()), o["clip_norm"])
        for gr in opt.param_groups:
            gr["lr"] = lr_at(o, t)
        opt.step()
        for b, mc in enumerate(cfg["moe"]):
            mean = ROWS * mc["top_k"] / mc["n_expert"]
            model.bias[b] = model.bias[b] + o["bias_gamma"] * np.sign(mean - counts[b])
        losses.append(float(loss))
    return o, init, io, lab, tgt, losses, model, margin


def main():
    """Writes every case's fixtures, or only those of the cases named on the command line."""
    os.makedirs(OUT, exist_ok=True)
    only = sys.argv[1:]
    for name, (cfg, extra) in CASES.items():
        if only and name not in only:
            continue
        for seed in range(100, 200):
            o, init, io, lab, tgt, losses, model, margin = run(name, cfg, extra, seed)
            if margin > ROUTE_MARGIN:
                break
        else:
            sys.exit(f"{name}: no seed keeps the routing margin above {ROUTE_MARGIN}")
        write_safetensors(os.path.join(OUT, name + ".init.safetensors"), init,
                          {"config": json.dumps(cfg, separators=(",", ":"))})
        io["loss"] = np.array(losses, np.float32)
        if cfg["task"]["kind"] == "regression":
            io["target"] = tgt
        else:
            io["label"] = lab
        for k, v in model.P.items():
            io["final." + k] = v.detach().numpy().astype(np.float32)
        for b, bias in enumerate(model.bias):
            io[f"final.moe.{b}.router.bias"] = bias.astype(np.float32)
        write_safetensors(os.path.join(OUT, name + ".io.safetensors"), io,
                          {"opts": json.dumps(o, separators=(",", ":"))})
        print(f"{name}: seed {seed}, routing margin {margin:.2e}, losses " + " ".join(f"{x:.5f}" for x in losses))


if __name__ == "__main__":
    main()
