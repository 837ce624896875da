#!/usr/bin/python3
"""PyTorch agreement fixtures for libmoe's trainer (engine/src/trainer): an independent float64
autograd implementation of the tabular model of engine/MODEL_FORMAT.md, trained for a few
steps on fixed batches with the trainer's recipe:

  loss (class-weighted BCE | cross-entropy with label smoothing | Huber) + the auxiliary balance
  loss alpha * sum_i f_i P_i per MoE block (f_i = E / (K m) * rows routed to i, a constant;
  P_i = mean over rows of the scores normalised to sum 1), gradient clipping by global norm
  (torch.nn.utils.clip_grad_norm_), torch.optim.AdamW with weight decay on 2-D tensors only and
  the learning rate of each step set to linear warmup then cosine decay, then the selection
  bias update bias_i += gamma * sign(mean load - load_i) outside the gradient.

Run with Debian's python3 (python3-torch 1.13):  /usr/bin/python3 tests/golden/train/gen_train_golden.py
For each case it writes tests/golden/train/fixtures/<case>.init.safetensors (the initial fp32
model file, which the C test loads with moe_trainer_load) and <case>.io.safetensors: the batches
("numeric" (S, m, n_num), "categorical" (S, m, n_cat), "label" (S, m) or "target" (S, m, n_t)),
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

        d_in = len(enc["numeric"])
        for i, c in enumerate(enc["categorical"]):
            P[f"enc.cat.{i}.weight"] = rng.standard_normal((len(c["vocab"]), c["dim"]))
            d_in += c["dim"]
        lin("enc.in", d, d_in, True)
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

    def forward(self, num, cat, alpha):
        """Returns logits, the balance loss, per block counts and the smallest routing margin."""
        P, enc = self.P, self.cfg["encoder"]
        mean = torch.tensor([f["mean"] for f in enc["numeric"]])
        std = torch.tensor([f["std"] for f in enc["numeric"]])
        parts = [(torch.from_numpy(num.astype(np.float64)) - mean) / std]
        for i in range(len(enc["categorical"])):
            parts.append(P[f"enc.cat.{i}.weight"][torch.from_numpy(cat[:, i].astype(np.int64))])
        h = F.linear(torch.cat(parts, 1), P["enc.in.weight"], P["enc.in.bias"])
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
    n_num, n_cat = len(enc["numeric"]), len(enc["categorical"])
    num = np.stack([(0.5 * i + (1 + 0.5 * i) * rng.standard_normal((STEPS, ROWS))) for i in range(n_num)],
                   axis=-1).astype(np.float32)
    cat = np.stack([rng.integers(0, len(c["vocab"]), (STEPS, ROWS)) for c in enc["categorical"]],
                   axis=-1).astype(np.int32)
    n_lab = len(cfg["task"]["labels"])
    lab = rng.integers(0, 2 if kind == "binary" else n_lab, (STEPS, ROWS)).astype(np.int32)
    tgt = rng.standard_normal((STEPS, ROWS, n_lab)).astype(np.float32)
    init = {k: v.detach().numpy().astype(np.float32) for k, v in model.P.items()}
    for b, bias in enumerate(model.bias):
        init[f"moe.{b}.router.bias"] = bias.astype(np.float32)
    decay = [p for k, p in model.P.items() if p.dim() == 2]
    no_decay = [p for k, p in model.P.items() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["adam_eps"])
    losses, margin = [], float("inf")
    for t in range(STEPS):
        logits, aux, counts, mg = model.forward(num[t], cat[t], o["balance_alpha"])
        margin = min(margin, mg)
        loss = loss_of(kind, o, logits, lab[t], tgt[t]) + aux
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.P.values()), o["clip_norm"])
        for gr in opt.param_groups:
            gr["lr"] = lr_at(o, t)
        opt.step()
        for b, mc in enumerate(cfg["moe"]):
            mean = ROWS * mc["top_k"] / mc["n_expert"]
            model.bias[b] = model.bias[b] + o["bias_gamma"] * np.sign(mean - counts[b])
        losses.append(float(loss))
    return o, init, num, cat, lab, tgt, losses, model, margin


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, (cfg, extra) in CASES.items():
        for seed in range(100, 200):
            o, init, num, cat, lab, tgt, losses, model, margin = run(name, cfg, extra, seed)
            if margin > ROUTE_MARGIN:
                break
        else:
            sys.exit(f"{name}: no seed keeps the routing margin above {ROUTE_MARGIN}")
        write_safetensors(os.path.join(OUT, name + ".init.safetensors"), init,
                          {"config": json.dumps(cfg, separators=(",", ":"))})
        io = {"numeric": num, "categorical": cat, "loss": np.array(losses, np.float32)}
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
