import json
import os
import subprocess
import sys

import pytest
import torch

from sftloop import registry
from sftloop.train.config import load_config
from sftloop.dataset_version import Manifest
from sftloop.train.data import DataError, check_manifest


from train_helpers import write_train_config


def test_short_run_writes_adapter_report_and_registers_candidate(tiny_root, tiny_run):
    run_dir, summary = tiny_run
    assert summary["steps"] == 6 and summary["mask"] == "block4d"
    assert summary["padding_efficiency"] > 0.9  # packed rows are nearly full
    assert summary["best_eval_loss"] is not None and summary["dataset"]["name"] == "tiny"
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    for f in ("report.md", "loss.png", "grad_norms.png", "effective_rank.png"):
        assert (run_dir / f).stat().st_size > 100
    assert "effective rank" in (run_dir / "report.md").read_text()
    cand = registry.get("candidate", tiny_root / "models.toml")
    assert cand.adapter.endswith("adapter") and cand.base_model == "smollm2-135m-instruct"
    assert registry.get("base", tiny_root / "models.toml").base_model == "smollm2-135m-instruct"


def test_merge_gives_same_greedy_outputs_and_logits(tiny_run, smol_tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from sftloop.assets import path
    from sftloop.train.merge import merge

    run_dir, _ = tiny_run
    merged_dir = merge(run_dir)
    base = AutoModelForCausalLM.from_pretrained(path("smollm2-135m-instruct"))
    adapted = PeftModel.from_pretrained(base, run_dir / "adapter").eval()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    prompts = ["How do I reset my password?", "Where is my order?", "Can I pay by card?",
               "How long do refunds take?", "How do I cancel my subscription?"]
    for p in prompts:
        enc = smol_tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                 return_tensors="pt", return_dict=True)
        with torch.no_grad():
            la, lm = adapted(**enc).logits, merged(**enc).logits
            assert torch.allclose(la, lm, atol=1e-3), (la - lm).abs().max()
            ga = adapted.generate(**enc, max_new_tokens=12, do_sample=False)
            gm = merged.generate(**enc, max_new_tokens=12, do_sample=False)
        assert ga.tolist() == gm.tolist()


def test_killed_run_resumes_from_checkpoint(tiny_root, tiny_run):
    """SIGKILL a real training process after its first checkpoint; the rerun resumes and matches."""
    import signal
    import time

    _, full = tiny_run
    cfg = write_train_config(tiny_root, name="tiny", register_as="")  # "" = do not register
    env = {**os.environ, "SFTLOOP_ROOT": str(tiny_root)}
    cmd = [sys.executable, "-m", "sftloop.train", "run", str(cfg), "--root", str(tiny_root), "--run-id", "killed"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tiny_root / "runs" / "killed" / "checkpoints" / "checkpoint-3" / "trainer_state.json"
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert state.exists() and proc.poll() is None, "run ended before its first checkpoint"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (tiny_root / "runs" / "killed" / "run.json").exists()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    # off a TTY: a line per stage, plain progress lines, no tqdm frames, no deprecation warning from our calls
    for line in ("train: dataset version ...", "train: encode + pack done in", "train: training 6 optimizer steps from step 3 (resumed)",
                 "train: step 6/6 (100%)", "train: training done in", "train: adapter, report, registry done in"):
        assert line in r.stderr, (line, r.stderr[-3000:])
    assert "\r" not in r.stderr and "it/s]" not in r.stderr and "is_gradient_checkpointing" not in r.stderr
    assert "{'loss':" not in r.stdout + r.stderr  # Trainer's per-log dicts are not printed
    resumed = json.loads((tiny_root / "runs" / "killed" / "run.json").read_text())
    assert resumed["resumed"] is True and resumed["steps"] == full["steps"]
    assert abs(resumed["final_eval_loss"] - full["final_eval_loss"]) < 0.05


def test_manifest_mismatch_is_refused(tiny_root):
    cfg = load_config(write_train_config(tiny_root, name="mm"))
    from transformers import AutoTokenizer

    from sftloop.assets import path
    tok = AutoTokenizer.from_pretrained(path("smollm2-135m-instruct"))
    with pytest.raises(DataError, match="chat template differs"):
        check_manifest(Manifest.model_validate({"name": "x", "version": "v", "tokenizer": {"chat_template_sha256": "0" * 64}}), cfg, tok)
    with pytest.raises(DataError, match="token limit 4096 > training max_len 256"):
        check_manifest(Manifest.model_validate({"name": "x", "version": "v", "tokenizer": {"max_tokens": 4096}}), cfg, tok)


def test_overflow_is_counted_not_silent(tiny_root, smol_tokenizer):
    from sftloop.train.data import encode_records, read_split, resolve_version

    recs = read_split(resolve_version("data/datasets/tiny", tiny_root), "train")
    cfg = load_config(write_train_config(tiny_root, name="cut", max_len=60, overflow="drop"))
    enc, rep = encode_records(recs, smol_tokenizer, cfg)
    assert rep.dropped_overflow > 0 and len(enc) == rep.encoded == rep.samples - rep.dropped_overflow
    assert rep.bad_share > 0.1 and "max_len 60" in rep.examples[0]


def test_weights_upsample_and_replay_share():
    from sftloop.schema import ChatRecord
    from sftloop.train.data import apply_weights, mix_replay

    def rec(i, w=1.0, src="s"):
        return ChatRecord.model_validate({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
                                          "source": src, "weight": w})

    recs = [rec(0, 3.0, "mined:2026-W47")] + [rec(i) for i in range(1, 10)]
    out = apply_weights(recs, seed=0)
    assert sum(r.source == "mined:2026-W47" for r in out) == 3 and len(out) == 12
    mixed = mix_replay(out, [rec(100 + i, src="replay") for i in range(50)], share=0.2, seed=0)
    assert sum(r.source == "replay" for r in mixed) / len(mixed) == 3 / 15


def test_nan_loss_stops_with_step_and_batch_ids(tmp_path, smol_tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, TrainingArguments

    from sftloop.assets import path
    from sftloop.train.masking import encode
    from sftloop.train.packing import PackedCollator, pack
    from sftloop.train.trainer import PackedTrainer, _RowIds

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path("smollm2-135m-instruct")),
                           LoraConfig(r=2, target_modules=["q_proj"]))
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_B" in n).fill_(float("nan"))
    e = encode(smol_tokenizer, [{"role": "user", "content": "Hi there, how are you?"},
                                {"role": "assistant", "content": "Fine, thanks for asking!"}])
    rows = [{"row": r.__dict__, "idx": 7} for r in pack([(e.input_ids, e.labels)], 256)]
    trainer = PackedTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True,
                                                                remove_unused_columns=False),
                            train_dataset=rows, data_collator=_RowIds(PackedCollator(smol_tokenizer.pad_token_id)))
    batch = _RowIds(PackedCollator(smol_tokenizer.pad_token_id))(rows)
    with pytest.raises(FloatingPointError, match=r"non-finite loss nan at step 0, packed rows \[7\]"):
        trainer.compute_loss(model, batch)


def test_unpacked_run_uses_padding_and_length_grouping(tiny_root):
    from sftloop.train.trainer import train

    cfg = load_config(write_train_config(tiny_root, name="nopack", pack=False, per_device_batch=2, max_steps=2,
                                         eval_steps=2, save_steps=2, register_as=""))
    summary = json.loads((train(cfg, tiny_root, progress=False) / "run.json").read_text())
    assert summary["steps"] == 2 and summary["mask"] == "block4d"
    assert 0.3 < summary["padding_efficiency"] < 1.0  # padded batches waste slots; packing does not
