"""Progress without a terminal: plain lines a log file can hold, never tqdm's carriage returns."""

from __future__ import annotations

from matchdetr.io.progress import Progress


def test_plain_lines_without_a_terminal(capsys) -> None:
    bar = Progress(5, "eval", "images", every_s=0.0)
    for _ in range(5):
        bar.update()
    bar.close()
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0].startswith("eval 1/5 images,") and lines[-1].startswith("eval 5/5 images,")
    assert "\r" not in out.out + out.err
    quiet = Progress(5, "eval", enabled=False, every_s=0.0)
    quiet.update(5)
    quiet.close()
    assert capsys.readouterr().out == ""
