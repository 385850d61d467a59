"""The LoRA trainer: transformers.Trainer for the loop, our masking/packing/monitoring around it.

Reads top to bottom: config -> dataset version (checked) -> encode + mix + pack -> model + LoRA ->
Trainer (accumulation, cosine schedule, clipping, eval, checkpoints, best-by-eval-loss, resume,
TensorBoard) -> best adapter + run report -> registry `candidate`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from sftloop import registry
from sftloop.assets import resolve_model
from sftloop.backends import quiet_peft
from sftloop.fingerprint import chat_template_sha256, tokenizer_sha256
from sftloop.settings import repo_root
from sftloop.train import data as D
from sftloop.train import distributed
from sftloop.train.config import TrainConfig
from sftloop.progress import is_tty, quiet_library_bars
from sftloop.train.console import ConsoleLog, Stages
from sftloop.train.monitor import Monitor
from sftloop.train.packing import PackedCollator, PaddingCollator, pack


class TrainError(RuntimeError):
    pass


class PackedTrainer(Trainer):
    """Pops our bookkeeping tensors and refuses non-finite losses with step and batch ids."""

    monitor: Monitor | None = None

    def compute_loss(self, model, inputs, return_outputs=False, **kw):
        counts = {k: int(inputs.pop(k)) for k in ("n_tokens", "n_trained", "n_slots") if k in inputs}
        rows = inputs.pop("row_ids", None)
        if self.monitor is not None and model.training and counts:
            self.monitor.tokens["processed"] += counts["n_tokens"]
            self.monitor.tokens["trained"] += counts["n_trained"]
            self.monitor.tokens["slots"] += counts["n_slots"]
            if rows is not None:
                self.monitor.rows_seen.update(rows.tolist())
        out = super().compute_loss(model, inputs, return_outputs=return_outputs, **kw)
        loss = out[0] if return_outputs else out
        if not torch.isfinite(loss):
            ids = rows.tolist() if rows is not None else "?"
            raise FloatingPointError(f"non-finite loss {float(loss.detach())} at step {self.state.global_step}, packed rows {ids}")
        if self.monitor is not None and model.training:  # per-step loss for the report's smoothed curve
            scaled = kw.get("num_items_in_batch") is not None and bool(self.model_accepts_loss_kwargs)
            self.monitor.add_loss(self.state.global_step + 1, float(loss.detach()), scaled)
        return out


class _RowIds:
    """Adds the packed-row ids to each batch so a NaN names its batch."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, rows):
        out = self.collator([r["row"] for r in rows])
        out["row_ids"] = torch.tensor([r["idx"] for r in rows])
        return out


def git_commit(root: Path) -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def pick_attention(cfg: TrainConfig) -> tuple[str, str]:
    attn = cfg.attn_implementation
    if attn == "auto":
        try:
            import flash_attn  # noqa: F401

            attn = "flash_attention_2" if torch.cuda.is_available() else "sdpa"
        except ImportError:
            attn = "sdpa"
    mask = cfg.mask
    if mask == "auto":
        mask = "position_ids" if attn == "flash_attention_2" else "block4d"
    if mask == "position_ids" and attn != "flash_attention_2":
        raise TrainError("mask = position_ids isolates packed conversations only with flash_attention_2; "
                         "with sdpa/eager use block4d (see docs/train.md)")
    return attn, mask


def coverage(train_rows: list[dict], monitor: Monitor, state, log: list[dict]) -> dict:
    """How much of the data this run trained on, both token ratios, and the eval losses before/after
    (run.json keeps full precision; the report rounds)."""
    labels = [sum(1 for x in r["labels"] if x != -100) for r in train_rows]
    convs = [len(r.get("seq_lens", [1])) for r in train_rows]
    seen = sorted(monitor.rows_seen)
    evals = [x for x in log if "eval_loss" in x]
    step0 = next((x["eval_loss"] for x in evals if x["step"] == 0), None)
    final = evals[-1]["eval_loss"] if evals else None
    return {
        "epochs": state.epoch, "rows_total": len(train_rows), "rows_trained": len(seen),
        "conversations_total": sum(convs), "conversations_trained": sum(convs[i] for i in seen),
        "tokens_total": sum(len(r["input_ids"]) for r in train_rows), "label_tokens_total": sum(labels),
        # padding efficiency: non-pad tokens / batch slots (1.0 = no padding; packing gets there)
        "batch_slots": monitor.tokens["slots"],
        "padding_efficiency": monitor.tokens["processed"] / max(monitor.tokens["slots"], 1),
        # trained-token share: tokens with a label (assistant replies + end-of-turn) / non-pad tokens
        "trained_token_share": monitor.tokens["trained"] / max(monitor.tokens["processed"], 1),
        "eval_loss_step0": step0,
        "eval_loss_change": final - step0 if final is not None and step0 is not None else None,
        "step_losses": monitor.step_losses,
    }


def run_id_for(cfg: TrainConfig, version: str) -> str:
    h = hashlib.sha256(json.dumps({"cfg": cfg.model_dump(), "data": version}, sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.name}-{version}-{h}"


def train(cfg: TrainConfig, root: Path | None = None, run_id: str | None = None, fresh: bool = False,
          progress: bool = True) -> Path:
    root = root or repo_root()
    distributed.init()  # no-op in one process; a torchrun worker joins its group (gloo on CPU)
    torch.manual_seed(cfg.seed)
    stages = Stages("train")
    stages.next("dataset version")
    base = resolve_model(cfg.base_model)
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token

    # 1. the dataset version, checked before anything expensive
    version = D.resolve_version(cfg.dataset, root)
    D.check_manifest(version.manifest, cfg, tok)
    train_recs = D.read_split(version, "train")
    val_recs = D.read_split(version, "val")
    if cfg.max_train_samples:
        train_recs = train_recs[: cfg.max_train_samples]
    if cfg.max_eval_samples:
        val_recs = val_recs[: cfg.max_eval_samples]
    replay_info = None
    if cfg.replay:
        rv = D.resolve_version(cfg.replay.dataset, root)
        replay = D.read_split(rv, "train")
        before = len(train_recs)
        train_recs = D.mix_replay(train_recs, replay, cfg.replay.share, cfg.seed)
        replay_info = {"dataset": str(rv.path), "share": cfg.replay.share, "rows_added": len(train_recs) - before}
    train_recs = D.apply_weights(train_recs, cfg.seed)
    if not train_recs:
        raise TrainError(f"{version.path}: no training rows")
    stages.detail(f"{version.version}: {len(train_recs)} train / {len(val_recs)} val records")
    stages.next("encode + pack")

    # 2. masking (our own: the template decides what is trained) and packing
    train_enc, train_rep = D.encode_records(train_recs, tok, cfg)
    val_enc, _ = D.encode_records(val_recs, tok, cfg)
    if train_rep.bad_share > cfg.max_bad_share:
        raise TrainError(
            f"{train_rep.bad_share:.0%} of samples were cut, dropped or empty (> max_bad_share {cfg.max_bad_share:.0%}): "
            f"cut {train_rep.cut_at_turn}, dropped {train_rep.dropped_overflow}, zero-trainable {train_rep.zero_trainable}. "
            f"e.g. {train_rep.examples[:2]}")
    attn, mask = pick_attention(cfg)
    if cfg.pack:
        # a multiple of world size x batch, so no rank repeats a row to fill its last batch (distributed.py)
        slots = distributed.world_size() * cfg.per_device_batch
        try:
            train_packed, _ = distributed.balance_rows(pack(train_enc, cfg.max_len), slots)
        except ValueError as e:
            raise TrainError(f"train split: {e}") from None
        val_packed = pack(val_enc, cfg.max_len)
        try:
            val_packed, _ = distributed.balance_rows(val_packed, slots)
        except ValueError:
            pass  # too few val conversations: a rank repeats one in eval (eval loss slightly biased), training unaffected
        train_rows = [r.__dict__ for r in train_packed]
        val_rows = [r.__dict__ for r in val_packed]
        collator = PackedCollator(tok.pad_token_id, mask=mask, dtype=torch.bfloat16 if cfg.bf16 else torch.float32)
    else:  # length-grouped batching (Trainer's group_by_length) with padding
        train_rows = [{"input_ids": i, "labels": lab} for i, lab in train_enc]
        val_rows = [{"input_ids": i, "labels": lab} for i, lab in val_enc]
        collator = PaddingCollator(tok.pad_token_id)
    stages.detail(f"{len(train_rows)} train rows, {len(val_rows)} val rows, mask {mask}")
    stages.next("model + LoRA")
    train_ds = [{"row": r, "idx": i, "input_ids": r["input_ids"]} for i, r in enumerate(train_rows)]
    # input_ids at the top level: Trainer's length-grouped sampler reads them (train and eval) when not packing
    val_ds = [{"row": r, "idx": i, "input_ids": r["input_ids"]} for i, r in enumerate(val_rows)]

    # 3. model + LoRA
    from peft import LoraConfig, get_peft_model
    quiet_library_bars()  # no "Loading weights" frames in a non-interactive log
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16 if cfg.bf16 else torch.float32,
                                                 attn_implementation=attn)
    if cfg.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x: the old name is deprecated
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})  # DDP/FSDP-safe
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    with quiet_peft():  # peft reads the deprecated `is_gradient_checkpointing` alias
        model = get_peft_model(model, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                                 target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM"))

    # 4. the run directory and Trainer
    run_id = run_id or run_id_for(cfg, version.version)
    run_dir = root / cfg.runs_dir / run_id
    if fresh and run_dir.exists() and distributed.is_main():
        import shutil

        shutil.rmtree(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
    distributed.barrier()  # every rank sees the same run dir (and checkpoints to resume from) from here on
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    monitor = Monitor(cfg.monitor_every, cfg.lora.r)
    monitor.attach(model)
    resume = any(ckpt_dir.glob("checkpoint-*")) if ckpt_dir.exists() else False
    tqdm_bar = progress and is_tty()  # off a TTY: ConsoleLog lines instead of tqdm frames and log dicts
    args = TrainingArguments(
        output_dir=str(ckpt_dir), per_device_train_batch_size=cfg.per_device_batch,
        per_device_eval_batch_size=cfg.per_device_batch, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio,
        max_grad_norm=cfg.max_grad_norm, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        logging_steps=cfg.logging_steps, eval_strategy="steps" if val_ds else "no", eval_steps=cfg.eval_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=bool(val_ds), metric_for_best_model="eval_loss", greater_is_better=False,
        bf16=cfg.bf16, seed=cfg.seed, data_seed=cfg.seed, remove_unused_columns=False,
        report_to=cfg.report_to, disable_tqdm=not tqdm_bar,
        eval_on_start=bool(val_ds) and not resume,  # step-0 eval loss: the base model's baseline for the report
        train_sampling_strategy="random" if cfg.pack else "group_by_length", dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
        # several processes: loss normalised by the step's trained tokens summed over all ranks (distributed.py)
        average_tokens_across_devices=True, ddp_find_unused_parameters=False,
        fsdp=cfg.fsdp, fsdp_config=cfg.fsdp_config or None,
    )
    trainer = PackedTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds or None,
                            data_collator=_RowIds(collator), callbacks=[monitor])
    trainer.monitor = monitor
    if not tqdm_bar:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # one dict per log step otherwise
        if progress:
            trainer.add_callback(ConsoleLog())
    stages.next("training")
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.time() - t0
    dist_info = distributed.gather_monitor(monitor)  # rank 0 now holds every rank's tokens, rows and losses
    if distributed.active():
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        dist_info["allreduce_s"] = distributed.allreduce_seconds(trainable)
        dist_info["trainable_params"] = trainable
        dist_info["fsdp"] = cfg.fsdp
    if cfg.fsdp:
        trainer.save_model(str(run_dir / "adapter"))  # every rank: FSDP gathers the sharded state dict
    if not distributed.is_main():  # no collective after this point: rank 0 writes adapter, report, registry
        return run_dir
    stages.detail(f"{trainer.state.global_step} steps")
    stages.next("adapter, report, registry")

    # 5. outputs: best adapter, lineage, report, registry
    adapter = run_dir / "adapter"
    if not cfg.fsdp:
        trainer.model.save_pretrained(adapter)
    tok.save_pretrained(adapter)
    log = trainer.state.log_history
    final_eval = next((x["eval_loss"] for x in reversed(log) if "eval_loss" in x), None)
    summary = {
        "run_id": run_id, "config": cfg.model_dump(), "dataset": D.describe(version), "git_commit": git_commit(root),
        "seed": cfg.seed, "base_model": cfg.base_model, "attn_implementation": attn, "mask": mask,
        "encode": train_rep.__dict__, "replay": replay_info, "train_rows": len(train_rows), "samples": len(train_enc),
        "val_samples": len(val_enc),
        "steps": trainer.state.global_step, "resumed": resume, "train_loss": result.training_loss,
        "best_eval_loss": trainer.state.best_metric, "final_eval_loss": final_eval,
        "best_checkpoint": trainer.state.best_model_checkpoint, "seconds": seconds,
        "trained_tokens": monitor.tokens["trained"], "processed_tokens": monitor.tokens["processed"],
        "distributed": dist_info,
        **coverage(train_rows, monitor, trainer.state, log),
        # train/serve identity: `just serve` and the gate refuse a server that renders differently
        "chat_template_sha256": chat_template_sha256(tok), "tokenizer_sha256": tokenizer_sha256(tok),
    }
    (run_dir / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    from sftloop.train.report import write_report

    write_report(run_dir, summary, log, monitor.history, cfg.lora.r)
    if cfg.merge:
        from sftloop.train.merge import merge

        merge(run_dir)
    if cfg.register_as:
        entry = registry.ModelEntry(base_model=cfg.base_model, adapter=os.path.relpath(adapter, root),
                                    run=os.path.relpath(run_dir, root))
        registry.put(cfg.register_as, entry, registry.registry_path(root))
    if not math.isfinite(result.training_loss):
        raise TrainError("training loss is not finite")
    stages.detail(str(run_dir / "report.md"))
    stages.done()
    return run_dir
