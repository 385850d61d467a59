"""Training on several processes (DDP on CPU, gloo): parity with one process, disjoint rows that cover
the epoch, loss normalised by the global trained-token count, resume and rank-0-only outputs."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from train_helpers import write_train_config

# 1 process (batch 2) vs 2 processes (batch 1 each): the same global batch and seed. The losses differ
# only by float reduction order (different thread counts, padding of the 2-row batch); measured here
# below 1e-6 per step; the tolerance is loose (the normalisation itself is tested directly below).
LOSS_TOL = 1e-2
# max_len 128: 8 train conversations of 40-110 tokens pack into 8 rows (4 steps of 2 rows, measured). The
# monitor's SVD part (minutes on a shared 2-core machine) is off; its per-step losses, tokens and rows run.
SMALL = {"max_len": 128, "max_train_samples": 8, "max_steps": -1, "epochs": 1, "max_eval_samples": 2,
         "eval_steps": 1, "save_steps": 1, "monitor_every": 1000, "save_total_limit": 10}


TOPICS = ["refund", "delivery", "password", "invoice", "warranty", "discount", "exchange", "subscription",
          "gift card", "address", "tracking", "payment", "return label", "size chart", "loyalty points", "store hours"]


@pytest.fixture(scope="module")
def ddp_root(tmp_path_factory):
    """A project root with 16 support conversations of uneven length (real curate run), token limit 128."""
    import textwrap

    from sftloop.curate.__main__ import main

    root = tmp_path_factory.mktemp("ddp")
    with open(root / "chat.jsonl", "w") as f:
        for i, t in enumerate(TOPICS):
            reply = f"Here is how the {t} works for order {1000 + i}. " + " ".join(
                f"Step {k + 1}: check the {t} page, section {k + 2}." for k in range(1 + i % 5))
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Question {i}: how does the {t} work?"},
                                             {"role": "assistant", "content": reply}]}) + "\n")
    (root / "models.toml").write_text('[models.base]\nbase_model = "smollm2-135m-instruct"\n')
    (root / "c.toml").write_text(textwrap.dedent(f"""
        name = "tiny"
        [[sources]]
        name = "chat"
        format = "messages"
        path = "{root}/chat.jsonl"
        [[stages]]
        type = "token_limit"
        max_tokens = 128
        [split]
        val_fraction = 0.2
    """))
    assert main(["run", str(root / "c.toml"), "--root", str(root), "--quiet"]) == 0
    return root


def _run_json(root, run_id):
    return json.loads((root / "runs" / run_id / "run.json").read_text())


@pytest.fixture(scope="module")
def one_and_two(ddp_root):
    """The fixture config trained with 1 process (in-process) and with 2 torchrun workers."""
    from sftloop.train.__main__ import main

    c1 = write_train_config(ddp_root, name="ddp1", per_device_batch=2, **SMALL)
    c2 = write_train_config(ddp_root, name="ddp2", per_device_batch=1, register_as="ddp2", **SMALL)
    assert main(["run", str(c1), "--root", str(ddp_root), "--run-id", "one"]) == 0
    os.environ["SFTLOOP_ROOT"] = str(ddp_root)
    try:
        assert main(["run", str(c2), "--root", str(ddp_root), "--run-id", "two", "--nproc", "2"]) == 0
    finally:
        os.environ.pop("SFTLOOP_ROOT")
    return c2, _run_json(ddp_root, "one"), _run_json(ddp_root, "two")


def test_two_processes_match_one_process_loss_curve(one_and_two):
    _, one, two = one_and_two
    assert two["distributed"]["world_size"] == 2 and two["distributed"]["backend"] == "gloo"
    assert one["distributed"] == {"world_size": 1}
    assert one["steps"] == two["steps"] >= 2 and one["train_rows"] == two["train_rows"]
    l1, l2 = dict(one["step_losses"]), dict(two["step_losses"])
    assert l1.keys() == l2.keys() and len(l1) == one["steps"]
    diffs = [abs(l1[s] - l2[s]) for s in l1]
    assert max(diffs) < LOSS_TOL, (diffs, l1, l2)
    assert abs(one["train_loss"] - two["train_loss"]) < LOSS_TOL
    # every rank's tokens were counted once: the same totals as one process
    assert one["trained_tokens"] == two["trained_tokens"] == sum(two["distributed"]["trained_tokens_per_rank"])
    assert two["distributed"]["allreduce_s"] > 0


def test_ranks_train_disjoint_rows_that_cover_the_epoch(one_and_two):
    _, _, two = one_and_two
    a, b = (set(r) for r in two["distributed"]["rows_by_rank"])
    assert a and b and not a & b and two["distributed"]["rows_overlap"] == 0
    assert a | b == set(range(two["rows_total"])) and two["rows_trained"] == two["rows_total"]
    # uneven token counts per rank (what the global normalisation is for)
    t = two["distributed"]["trained_tokens_per_rank"]
    assert t[0] != t[1]


def test_only_rank0_writes_report_and_registry_and_resume_works(ddp_root, one_and_two):
    from sftloop import registry
    from sftloop.train.__main__ import main

    c2, _, two = one_and_two
    run = ddp_root / "runs" / "two"
    assert (run / "report.md").stat().st_size > 100 and (run / "adapter" / "adapter_config.json").exists()
    assert registry.get("ddp2", ddp_root / "models.toml").run.endswith("two")
    assert two["resumed"] is False
    # drop every checkpoint after step 1 and the outputs; the 2-process rerun resumes at step 1
    for ck in (run / "checkpoints").glob("checkpoint-*"):
        if int(ck.name.split("-")[1]) > 1:
            shutil.rmtree(ck)
    (run / "run.json").unlink()
    os.environ["SFTLOOP_ROOT"] = str(ddp_root)
    try:
        assert main(["run", str(c2), "--root", str(ddp_root), "--run-id", "two", "--nproc", "2"]) == 0
    finally:
        os.environ.pop("SFTLOOP_ROOT")
    again = _run_json(ddp_root, "two")
    assert again["resumed"] is True and again["steps"] == two["steps"]
    before, after = dict(two["step_losses"]), dict(again["step_losses"])
    assert set(after) == {s for s in before if s > 1}  # only the steps after the checkpoint were trained
    assert max(abs(before[s] - after[s]) for s in after) < LOSS_TOL


def test_balance_rows_splits_until_ranks_get_whole_batches():
    from sftloop.train.distributed import balance_rows
    from sftloop.train.packing import pack

    samples = [([1] * n, [1] * n) for n in (50, 40, 30, 20, 10, 5)]
    rows = pack(samples, 100)  # 3 rows: 50+40+10, 30+20+5... first-fit decreasing
    out, rep = balance_rows(rows, 4)
    assert len(out) % 4 == 0 and rep.rows_before == len(rows) < rep.rows_after
    assert sorted(n for r in out for n in r.seq_lens) == [5, 10, 20, 30, 40, 50]  # nothing lost or repeated
    assert all(len(r.input_ids) == len(r.labels) == len(r.position_ids) == sum(r.seq_lens) for r in out)
    assert all(r.position_ids[:1] == [0] for r in out)
    with pytest.raises(ValueError, match="cannot be divided among 8"):
        balance_rows(rows, 8)


# -- the loss normalisation itself: 2 gloo processes with very uneven trained tokens per rank


def _uneven_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

    from sftloop.train import distributed
    from sftloop.train.masking import IGNORE
    from sftloop.train.packing import PackedCollator, PackedRow
    from sftloop.train.trainer import PackedTrainer, _RowIds

    distributed.init()
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=128)
    g = torch.Generator().manual_seed(1)
    # row 0 (rank 0): 60 trained tokens; row 1 (rank 1): 3 trained tokens
    rows = []
    for n, trained in ((64, 60), (64, 3)):
        ids = torch.randint(0, 64, (n,), generator=g).tolist()
        labels = [IGNORE] * (n - trained) + ids[n - trained:]
        rows.append(PackedRow(ids, labels, list(range(n)), [n]).__dict__)
    ds = [{"row": r, "idx": i} for i, r in enumerate(rows)]
    res = {}
    for mode in ("global", "per_rank"):
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg)
        p0 = {k: v.detach().clone() for k, v in model.named_parameters()}
        args = TrainingArguments(output_dir=f"{out}/{mode}", per_device_train_batch_size=1, max_steps=1, optim="sgd",
                                 learning_rate=1.0, lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0,
                                 report_to=[], use_cpu=True, remove_unused_columns=False, save_strategy="no",
                                 train_sampling_strategy="sequential", ddp_find_unused_parameters=False,
                                 average_tokens_across_devices=mode == "global", disable_tqdm=True)
        PackedTrainer(model=model, args=args, train_dataset=ds,
                      data_collator=_RowIds(PackedCollator(0))).train()
        res[mode] = {k: (p0[k] - v.detach()).tolist() for k, v in model.named_parameters()}  # = lr * grad
    if rank == 0:
        torch.manual_seed(0)
        ref = LlamaForCausalLM(cfg)
        total = sum(sum(1 for x in r["labels"][1:] if x != IGNORE) for r in rows)
        loss = 0
        for r in rows:  # one process, the whole batch: every trained token weighs the same
            logits = ref(input_ids=torch.tensor([r["input_ids"]])).logits[0, :-1]
            loss = loss + torch.nn.functional.cross_entropy(logits, torch.tensor(r["labels"][1:]), reduction="sum")
        (loss / total).backward()
        res["reference"] = {k: v.grad.tolist() for k, v in ref.named_parameters()}
        with open(f"{out}/grads.json", "w") as f:
            json.dump(res, f)


def test_loss_is_normalised_by_global_trained_tokens_not_per_rank(tmp_path):
    import torch.multiprocessing as mp

    from sftloop.train.distributed import free_port

    mp.spawn(_uneven_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    res = json.loads((tmp_path / "grads.json").read_text())

    def err(mode):
        num = sum(float(((torch.tensor(res[mode][k]) - torch.tensor(v)) ** 2).sum()) for k, v in res["reference"].items())
        den = sum(float((torch.tensor(v) ** 2).sum()) for v in res["reference"].values())
        return (num / den) ** 0.5

    assert err("global") < 1e-4  # DDP with the global token count = one process on the whole batch
    assert err("per_rank") > 0.3  # per-rank normalisation: rank 1's 3 tokens weigh as much as rank 0's 60


# -- the GPU configs through the same code path on CPU, with a random-weight tiny Llama


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A random-weight Llama (the Llama-3.1 family: GQA, RoPE scaling, untied embeddings), made locally."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sftloop.assets import path

    d = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(path("smollm2-135m-instruct"))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 256},
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _gpu_config(root, tiny_llama, src: str, name: str):
    import tomllib

    import tomli_w

    raw = tomllib.loads((Path(__file__).parents[2] / "train" / "configs" / src).read_text())
    raw.update(name=name, base_model=str(tiny_llama), dataset="data/datasets/tiny", register_as="", max_len=128,
               max_train_samples=8, max_eval_samples=2, max_steps=2, per_device_batch=1, grad_accum=1,
               eval_steps=2, save_steps=2, logging_steps=1, report_to=[], max_bad_share=1.0)
    p = root / f"{name}.toml"
    p.write_text(tomli_w.dumps(raw))
    return p


def test_gpu_config_path_on_cpu_bf16_checkpointing_attention(ddp_root, tiny_llama):
    """gpu-llama31-8b.toml as written (bf16, gradient checkpointing, attention "auto", packing) on a tiny Llama."""
    from sftloop.train.config import load_config
    from sftloop.train.trainer import train

    cfg = load_config(_gpu_config(ddp_root, tiny_llama, "gpu-llama31-8b.toml", "gpu1"))
    assert cfg.bf16 and cfg.gradient_checkpointing and cfg.attn_implementation == "auto"
    s = json.loads((train(cfg, ddp_root, progress=False) / "run.json").read_text())
    assert s["steps"] == 2 and s["attn_implementation"] == "sdpa" and s["mask"] == "block4d"  # no flash-attn on CPU
    assert all(v == v and v < 20 for _, v in s["step_losses"])  # finite; ln(49152) ~ 10.8 for random weights


def test_fsdp_config_two_processes_on_cpu(ddp_root, tiny_llama):
    """gpu-llama31-8b-fsdp.toml (full shard per decoder layer, LoRA with use_orig_params) on 2 gloo processes."""
    from sftloop.train.__main__ import main

    c = _gpu_config(ddp_root, tiny_llama, "gpu-llama31-8b-fsdp.toml", "fsdp2")
    os.environ["SFTLOOP_ROOT"] = str(ddp_root)
    try:
        assert main(["run", str(c), "--root", str(ddp_root), "--run-id", "fsdp2", "--nproc", "2"]) == 0
    finally:
        os.environ.pop("SFTLOOP_ROOT")
    s = _run_json(ddp_root, "fsdp2")
    assert s["steps"] == 2 and s["distributed"]["world_size"] == 2 and s["distributed"]["fsdp"] == "full_shard auto_wrap"
    assert (ddp_root / "runs" / "fsdp2" / "adapter" / "adapter_model.safetensors").stat().st_size > 1000
