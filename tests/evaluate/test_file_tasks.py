"""`python -m sftloop.evaluate grade|generate`: the file entry points curate uses instead of imports."""

import polars as pl

from sftloop.evaluate.__main__ import main


def _root(tmp_path):
    (tmp_path / "models.toml").write_text('[models.base]\nbase_model = "smollm2-135m-instruct"\n')
    return tmp_path


def test_grade_and_generate_files(tmp_path):
    root = _root(tmp_path)
    pl.DataFrame({"id": ["q1", "q2"], "messages": [[{"role": "user", "content": "What is the capital of France?"}],
                                                   [{"role": "user", "content": "Name a primary colour."}]]}).write_parquet(root / "in.parquet")
    assert main(["generate", str(root / "in.parquet"), str(root / "gen.parquet"), "--model", "base", "--max-new-tokens", "12",
                 "--root", str(root)]) == 0
    gen = pl.read_parquet(root / "gen.parquet")
    assert gen["id"].to_list() == ["q1", "q2"] and all(len(r) > 0 for r in gen["response"].to_list())
    pl.DataFrame({"id": ["a", "b"], "prompt": ["What is the capital of France?"] * 2,
                  "response": ["The capital of France is Paris.", "Bananas are yellow."],
                  "reference": ["Paris.", "Paris."]}).write_parquet(root / "g.parquet")
    assert main(["grade", str(root / "g.parquet"), str(root / "out.parquet"), "--judge", "base", "--root", str(root)]) == 0
    out = pl.read_parquet(root / "out.parquet")
    assert out["graded"].all() and out["score"].is_between(1, 5).all()
    assert set(out.columns) >= {"correctness", "completeness", "format_compliance", "hallucination_p", "judge"}


def test_bad_input_names_row_and_field(tmp_path, capsys):
    root = _root(tmp_path)
    pl.DataFrame({"id": ["a"], "prompt": ["hi"]}).write_parquet(root / "bad.parquet")
    assert main(["grade", str(root / "bad.parquet"), str(root / "o.parquet"), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "row 1" in err and "messages, or prompt and response" in err
    assert not (root / "o.parquet").exists()
