"""Progress off a TTY: periodic lines with an ETA and a summary, never carriage-return frames."""

import time

from sftloop.progress import progress, stage


def test_progress_off_tty_prints_lines_with_eta_and_a_summary(capsys, monkeypatch):
    monkeypatch.setattr("sftloop.progress.is_tty", lambda: False)
    out = []
    for i in progress(range(4), desc="demo: step", unit="row", every_s=0.0):  # noqa: B007
        time.sleep(0.3)
        out.append(i)
    err = capsys.readouterr().err
    assert out == [0, 1, 2, 3]
    assert "\r" not in err
    assert "demo: step: 1/4 row" in err and "ETA" in err
    assert err.strip().splitlines()[-1].startswith("demo: step: 4 row in ")
    assert "4/4" not in err  # the last item is the summary line only


def test_stage_prints_start_done_and_failure(capsys):
    with stage("gate", "golden") as s:
        s.detail = "38 items"
    try:
        with stage("gate", "judge"):
            raise ValueError("x")
    except ValueError:
        pass
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "gate: golden ..." and err[1].startswith("gate: golden done in ") and err[1].endswith("(38 items)")
    assert err[3].startswith("gate: judge failed after ")
