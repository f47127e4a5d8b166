"""The MiniLM-L6-H384 BERT encoder in NumPy, float64, from a safetensors file.

Mirrors ``transformers``' ``BertModel`` (absolute positions, post-LayerNorm, exact erf
GELU) for one unpadded sequence, followed by sentence-transformers' mean pooling and L2
normalisation. float64 throughout keeps the rounding noise of different BLAS kernels
(~1e-15) far below the engine's output quantisation step (1e-4), so honest nodes agree
bit for bit except with vanishing probability. The safetensors format (8-byte little-endian
header size, JSON header, raw tensors) is read directly: no torch, no safetensors package.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

_DTYPES = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as NumPy arrays (F32 widened to float64)."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    base = 8 + size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = np.dtype(_DTYPES[info["dtype"]])
        start, end = info["data_offsets"]
        count = (end - start) // dtype.itemsize
        array = np.frombuffer(raw, dtype=dtype, count=count, offset=base + start)
        array = array.reshape(info["shape"])
        tensors[name] = array.astype(np.float64) if dtype.kind == "f" else array.copy()
    return tensors


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def _is_linear(name: str) -> bool:
    return name.endswith(".weight") and (
        ".attention.self." in name or name.endswith("dense.weight")
    )


class MiniLM:
    """BERT encoder + mean pooling + L2 normalisation (sentence-transformers' pipeline)."""

    def __init__(self, weights: dict[str, np.ndarray], config: dict) -> None:
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.eps = float(config["layer_norm_eps"])
        if config.get("hidden_act") != "gelu" or self.hidden % self.heads:
            raise ValueError("unsupported BERT configuration")
        # linear weights are stored transposed once, so that x @ W.T becomes x @ Wt
        self.w = {
            name: np.ascontiguousarray(t.T) if _is_linear(name) else t
            for name, t in weights.items()
        }
        self.max_positions = self.w["embeddings.position_embeddings.weight"].shape[0]

    def _linear(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ self.w[prefix + ".weight"] + self.w[prefix + ".bias"]

    def embed(self, ids: list[int]) -> np.ndarray:
        """The L2-normalised mean-pooled embedding of one token id sequence."""
        n = len(ids)
        if not 0 < n <= self.max_positions:
            raise ValueError("sequence length out of range")
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][np.asarray(ids)]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(
            x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
        )
        head = self.hidden // self.heads
        scale = 1.0 / math.sqrt(head)
        for i in range(self.layers):
            p = f"encoder.layer.{i}"

            def split(t: np.ndarray) -> np.ndarray:
                # contiguous per-head blocks: stacked matmul on strided views is 20x slower
                return np.ascontiguousarray(t.reshape(n, self.heads, head).transpose(1, 0, 2))

            q = split(self._linear(x, f"{p}.attention.self.query"))
            k = split(self._linear(x, f"{p}.attention.self.key"))
            v = split(self._linear(x, f"{p}.attention.self.value"))
            scores = (q @ np.ascontiguousarray(k.transpose(0, 2, 1))) * scale
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(1, 0, 2).reshape(n, self.hidden)
            attn = self._linear(context, f"{p}.attention.output.dense")
            x = _layer_norm(
                attn + x,
                w[f"{p}.attention.output.LayerNorm.weight"],
                w[f"{p}.attention.output.LayerNorm.bias"],
                self.eps,
            )
            inner = _gelu(self._linear(x, f"{p}.intermediate.dense"))
            out = self._linear(inner, f"{p}.output.dense")
            x = _layer_norm(
                out + x,
                w[f"{p}.output.LayerNorm.weight"],
                w[f"{p}.output.LayerNorm.bias"],
                self.eps,
            )
        pooled = x.mean(axis=0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)
