"""Layering: sftloop <- train, evaluate <- curate. Our packages call each other in-process, never by subprocess."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAY_NOT_IMPORT = {"sftloop": {"curate", "train", "evaluate"}, "evaluate": {"curate", "train"},
                  "train": {"curate", "evaluate"}, "curate": set()}


LAYERS = ("curate", "train", "evaluate")


def _layer(module: str) -> str:
    """`sftloop.curate.x` -> curate; `sftloop.registry` -> sftloop; a bare `curate.x` -> `bare curate`
    (the old top-level name: it would import a second copy of the module, or someone else's package)."""
    parts = module.split(".")
    if parts[0] == "sftloop":
        return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "sftloop"
    return f"bare {parts[0]}" if parts[0] in LAYERS else parts[0]


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {_layer(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(_layer(node.module))
    return out


def test_nothing_imports_our_packages_by_their_bare_folder_names():
    files = [p for d in ("sftloop", *LAYERS, "tests", "bench") for p in sorted((ROOT / d).rglob("*.py"))]
    bad = [f"{p.relative_to(ROOT)} imports {sorted(b for b in _imports(p) if b.startswith('bare '))}"
           for p in files if any(b.startswith("bare ") for b in _imports(p))]
    assert not bad, bad


def test_installed_names_cannot_collide_with_hugging_faces_evaluate(tmp_path):
    """Outside the repo root, `sftloop.evaluate` is our gate and the bare name `evaluate` is not ours."""
    import subprocess
    import sys
    code = ("import importlib.util, sftloop.evaluate, sftloop.curate, sftloop.train; "
            "print(sftloop.evaluate.__file__); s = importlib.util.find_spec('evaluate'); print(s and s.origin)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    ours, bare = out.stdout.split("\n")[:2]
    assert Path(ours) == ROOT / "evaluate" / "__init__.py"
    assert bare == "None" or not bare.startswith(str(ROOT)), bare


def test_each_package_imports_only_the_layers_below_it():
    bad = [f"{p.relative_to(ROOT)} imports {sorted(_imports(p) & banned)}"
           for pkg, banned in MAY_NOT_IMPORT.items() for p in sorted((ROOT / pkg).rglob("*.py"))
           if _imports(p) & banned]
    assert not bad, bad


def test_no_package_starts_another_of_ours_as_a_subprocess():
    ours = ('"-m", "sftloop.evaluate"', '"-m", "sftloop.curate"', '"-m", "sftloop.train"', '"-m", "sftloop"')
    bad = [f"{p.relative_to(ROOT)}: {s}" for pkg in MAY_NOT_IMPORT for p in sorted((ROOT / pkg).rglob("*.py"))
           for s in ours if s in p.read_text(encoding="utf-8")]
    assert not bad, bad


def test_test_file_names_are_unique():
    """pytest imports test modules by basename (no __init__.py in tests/): two test_x.py stop collection."""
    from collections import Counter
    names = Counter(p.name for p in (ROOT / "tests").rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1], names
