"""Write a small training config for tests."""

from pathlib import Path


def write_train_config(root: Path, name: str = "tiny", **over) -> Path:
    cfg = {"name": name, "dataset": "data/datasets/tiny", "max_len": 256, "max_steps": 6, "grad_accum": 1,
           "per_device_batch": 1, "logging_steps": 1, "eval_steps": 3, "save_steps": 3, "monitor_every": 2,
           "learning_rate": 1e-3, "warmup_ratio": 0.0, "max_eval_samples": 4, "report_to": [], "seed": 0,
           "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
    cfg.update(over)
    import tomli_w

    p = root / f"{name}.toml"
    p.write_text(tomli_w.dumps(cfg))
    return p
