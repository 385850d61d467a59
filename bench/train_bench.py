"""Training throughput benchmark (prints figures; not a timed test).

Same data (the latest curated version, realistic length spread), same model (SmolLM2 asset), same
trained tokens (one pass over the same N samples), in one run:
- ours: padding-free packing (block-diagonal 4D mask), our template masking;
- baseline: plain transformers.Trainer with a padding collator, one conversation per row (the common recipe).
Prints trained tokens/s, token efficiency (real tokens / processed slots) and peak RSS, and the ratio.

    python bench/train_bench.py [--samples 48] [--batch 4]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from sftloop.assets import path
from sftloop.settings import offline_env, repo_root
from sftloop.train.config import TrainConfig
from sftloop.train.data import encode_records, read_split, resolve_version
from sftloop.train.masking import IGNORE
from sftloop.train.packing import PackedCollator, PaddingCollator, pack


class CountingTrainer(Trainer):
    counts = {"trained": 0, "tokens": 0, "slots": 0}

    def compute_loss(self, model, inputs, return_outputs=False, **kw):
        for k, key in (("n_trained", "trained"), ("n_tokens", "tokens"), ("n_slots", "slots")):
            self.counts[key] += int(inputs.pop(k))
        return super().compute_loss(model, inputs, return_outputs=return_outputs, **kw)


def run(rows, collator, batch: int, out: str) -> dict:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path("smollm2-135m-instruct"), attn_implementation="sdpa")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                                 "gate_proj", "up_proj", "down_proj"]))
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, num_train_epochs=1, learning_rate=2e-4,
                             logging_steps=1000, save_strategy="no", report_to=[], remove_unused_columns=False,
                             use_cpu=True, disable_tqdm=True, seed=0)
    tr = CountingTrainer(model=model, args=args, train_dataset=rows, data_collator=collator)
    tr.counts = {"trained": 0, "tokens": 0, "slots": 0}
    t = time.time()
    tr.train()
    s = time.time() - t
    return {"seconds": s, "trained_tokens": tr.counts["trained"], "tokens_per_s": tr.counts["trained"] / s,
            "token_efficiency": tr.counts["tokens"] / tr.counts["slots"]}


def main() -> None:
    offline_env()
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--batch", type=int, default=4, help="baseline conversations per batch")
    ap.add_argument("--max-len", type=int, default=1024)
    a = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(path("smollm2-135m-instruct"))
    cfg = TrainConfig(name="bench", max_len=a.max_len)
    recs = read_split(resolve_version(cfg.dataset, repo_root()), "train")[: a.samples]
    enc, _ = encode_records(recs, tok, cfg)
    lens = sorted(len(i) for i, _ in enc)
    print(f"{len(enc)} samples, tokens per sample: min {lens[0]}, median {lens[len(lens) // 2]}, max {lens[-1]}")
    packed = [r.__dict__ for r in pack(enc, a.max_len)]
    # the same trained tokens: in the packed rows the first label of every sample is ignored; do the same
    plain = [{"input_ids": i, "labels": [IGNORE] + lab[1:]} for i, lab in enc]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base = run(plain, PaddingCollator(tok.pad_token_id), a.batch, "/tmp/bench-base")
    rss_base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ours = run(packed, PackedCollator(tok.pad_token_id), 1, "/tmp/bench-ours")
    rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert base["trained_tokens"] == ours["trained_tokens"], (base, ours)
    print(f"baseline (padding, batch {a.batch}): {base['tokens_per_s']:.0f} trained tokens/s, "
          f"token efficiency {base['token_efficiency']:.3f}, {base['seconds']:.0f}s, peak RSS {rss_base:.0f} MB")
    print(f"ours (packed, 4D mask):          {ours['tokens_per_s']:.0f} trained tokens/s, "
          f"token efficiency {ours['token_efficiency']:.3f}, {ours['seconds']:.0f}s, peak RSS {max(rss_ours, rss_base):.0f} MB (process high-water)")
    print(f"ratio: {ours['tokens_per_s'] / base['tokens_per_s']:.2f}x trained tokens/s ({base['trained_tokens']} trained tokens each)")
    del rss0


if __name__ == "__main__":
    main()
