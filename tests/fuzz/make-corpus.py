#!/usr/bin/python3
"""Writes the fuzz seed corpus tests/fuzz/corpus/: small safetensors files, valid and broken in
one way each, and two tiny model files that moe_model_load_memory accepts (tabular and text,
fp32). Deterministic: rerunning it reproduces the committed files.

json-regress-* are inputs the fuzzer once failed on, kept as regression seeds (not made here).
valid-python-package is not made here either: it was written by the Python `safetensors` package 0.8.0
(save_file) and is kept as an interoperability seed.

Names say what each seed must do (tests/fuzz/replay-main.c checks it): valid-* open as
safetensors, model-* also load as models, invalid-* are rejected by the safetensors reader;
json-* are plain JSON texts for the parser.

Run: /usr/bin/python3 tests/fuzz/make-corpus.py
"""
import json
import os
import struct

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
DT = {np.dtype(np.float32): "F32", np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8",
      np.dtype(np.int64): "I64", np.dtype(np.float16): "F16", np.dtype(np.int32): "I32"}


def raw(header_bytes, data=b""):
    return struct.pack("<Q", len(header_bytes)) + header_bytes + data


def st(tensors, metadata=None, pad=64, order=None):
    """tensors: list of (name, array); laid out in list order, header padded to `pad`."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, a in tensors:
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": DT[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-(8 + len(h))) % pad)
    return raw(h, b"".join(blobs))


def save(name, blob):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(blob)


def tiny_models(rng):
    f = lambda *s: rng.standard_normal(s).astype(np.float32) * np.float32(0.5)
    d, ff = 4, 4

    def moe_block(i, n_expert, n_shared):
        t = [(f"moe.{i}.norm.weight", np.ones(d, np.float32)),
             (f"moe.{i}.router.weight", f(n_expert, d)), (f"moe.{i}.router.bias", f(n_expert))]
        for kind, n in (("expert", n_expert), ("shared", n_shared)):
            for e in range(n):
                t += [(f"moe.{i}.{kind}.{e}.gate.weight", f(ff, d)),
                      (f"moe.{i}.{kind}.{e}.up.weight", f(ff, d)),
                      (f"moe.{i}.{kind}.{e}.down.weight", f(d, ff))]
        return t

    base = {"format": "sluice-moe", "format_version": 1, "quant": "f32", "d_model": d,
            "norm": "rmsnorm", "provenance": {"generator": "tests/fuzz/make-corpus.py"},
            "moe": [{"n_expert": 2, "top_k": 1, "n_shared": 1, "d_ff": ff, "score": "softmax"}]}
    tab = dict(base, version="fuzz-tabular",
               encoder={"kind": "tabular",
                        "numeric": [{"name": "amount", "mean": 10.0, "std": 2.0}],
                        "categorical": [{"name": "mcc", "vocab": ["<unk>", "5411", "5812"],
                                         "dim": 2}]},
               task={"kind": "binary", "labels": ["legit", "fraud"]})
    t = [("enc.cat.0.weight", f(3, 2)), ("enc.in.weight", f(d, 3)), ("enc.in.bias", f(d))]
    t += moe_block(0, 2, 1)
    t += [("head.norm.weight", np.ones(d, np.float32)), ("head.weight", f(1, d)),
          ("head.bias", f(1))]
    save("model-tabular-f32", st(t, {"config": json.dumps(tab)}))
    save("json-config", json.dumps(tab, indent=1).encode())

    txt = dict(base, version="fuzz-text",
               encoder={"kind": "text", "vocab_size": 6, "max_len": 4, "n_layer": 1, "n_head": 2,
                        "d_ff": ff, "window": [2], "n_global": 1,
                        "tokenizer": {"kind": "wordpiece",
                                      "vocab": ["[PAD]", "[CLS]", "pain", "##s", "\u00e9", "a"]}},
               task={"kind": "multiclass", "labels": ["a", "b", "c"]})
    t = [("enc.tok.weight", f(6, d)), ("enc.pos.weight", f(4, d)),
         ("enc.layer.0.attn_norm.weight", np.ones(d, np.float32)),
         ("enc.layer.0.attn.qkv.weight", f(3 * d, d)), ("enc.layer.0.attn.out.weight", f(d, d)),
         ("enc.layer.0.ffn_norm.weight", np.ones(d, np.float32)),
         ("enc.layer.0.ffn.gate.weight", f(ff, d)), ("enc.layer.0.ffn.up.weight", f(ff, d)),
         ("enc.layer.0.ffn.down.weight", f(d, ff)), ("enc.norm.weight", np.ones(d, np.float32))]
    t += moe_block(0, 2, 1)
    t += [("head.norm.weight", np.ones(d, np.float32)), ("head.weight", f(3, d)),
          ("head.bias", f(3))]
    save("model-text-f32", st(t, {"config": json.dumps(txt)}))


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    save("valid-empty", st([]))
    save("valid-dtypes-metadata",
         st([("w", np.arange(6, dtype=np.float32).reshape(2, 3)),
             ("q", np.array([-128, -1, 0, 1, 127], np.int8)),
             ("h", np.array([1.0, -2.0], np.float16)), ("i", np.array([1, 2], np.int64)),
             ("empty", np.zeros((0, 3), np.float32))],
            {"config": "{\"a\": [1, 2.5, \"x\\u00e9\"]}", "format": "pt"}))
    # Python-package style: 8-byte padding, a byte tensor first so the floats are misaligned.
    save("valid-misaligned", st([("u", np.array([7], np.uint8)),
                                 ("f", np.array([1.5, 2.5], np.float32))], pad=8))
    tiny_models(rng)
    save("json-number-fraction", b"-123.456789012345e-7")
    save("json-number-long", b" 0.00000000000000000000012345678901234567890123e+3 ")
    save("json-escapes", b'{"s":"\\u00e9\\ud83d\\ude00\\u0000\\"\\\\\\/\\b\\f\\n\\r\\t",'
                         b'"n":[-0,1e-5,1.5E+300,-9223372036854775808,123456789012345678901],'
                         b'"l":[true,false,null,{},[]]}')

    ok = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    save("invalid-too-small", b"\x02\x00\x00")
    save("invalid-header-length", struct.pack("<Q", 1 << 40) + b"{}")
    save("invalid-json", raw(b'{"w":{"dtype":"F32",}}'))
    save("invalid-not-object", raw(b"[1,2]"))
    save("invalid-dtype", raw(b'{"w":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}', b"\0"))
    save("invalid-shape", raw(b'{"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,0]}}'))
    save("invalid-overflow", raw(b'{"w":{"dtype":"F32","shape":[4294967296,4294967296,2],'
                                 b'"data_offsets":[0,8]}}', bytes(8)))
    save("invalid-offsets", raw(b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}',
                                bytes(8)))
    save("invalid-overlap", raw(json.dumps(dict(ok, v={"dtype": "F32", "shape": [1],
                                                       "data_offsets": [4, 8]})).encode(),
                                bytes(8)))
    save("invalid-gap", raw(json.dumps({"w": {"dtype": "F32", "shape": [1],
                                              "data_offsets": [4, 8]}}).encode(), bytes(8)))
    save("invalid-trailing", raw(json.dumps(ok).encode(), bytes(12)))
    save("invalid-duplicate", raw(b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                  b'"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
                                  bytes(2)))
    save("invalid-metadata", raw(b'{"__metadata__":{"config":{"d_model":4}}}'))
    save("invalid-unicode", raw(b'{"\\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
                                b"\0"))


if __name__ == "__main__":
    main()
