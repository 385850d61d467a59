"""Layering: sftloop <- train, evaluate <- curate. Our packages call each other in-process, never by subprocess."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAY_NOT_IMPORT = {"sftloop": {"curate", "train", "evaluate"}, "evaluate": {"curate", "train"},
                  "train": {"curate", "evaluate"}, "curate": set()}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def test_each_package_imports_only_the_layers_below_it():
    bad = [f"{p.relative_to(ROOT)} imports {sorted(_imports(p) & banned)}"
           for pkg, banned in MAY_NOT_IMPORT.items() for p in sorted((ROOT / pkg).rglob("*.py"))
           if _imports(p) & banned]
    assert not bad, bad


def test_no_package_starts_another_of_ours_as_a_subprocess():
    ours = ('"-m", "evaluate"', '"-m", "curate"', '"-m", "train"', '"-m", "sftloop"')
    bad = [f"{p.relative_to(ROOT)}: {s}" for pkg in MAY_NOT_IMPORT for p in sorted((ROOT / pkg).rglob("*.py"))
           for s in ours if s in p.read_text(encoding="utf-8")]
    assert not bad, bad
