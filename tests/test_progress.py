"""Progress: one line per stage with counts and timing when stderr is not a terminal."""
from __future__ import annotations

import io

from foleybench.progress import Stage, track


def test_non_tty_prints_one_line_per_stage():
    buf = io.StringIO()   # not a TTY
    st = Stage("embed vggish", total=3, unit="batch", stream=buf)
    for _ in range(3):
        st.update(1)
    st.set_postfix(loss="0.5")
    st.close()
    st.close()            # idempotent
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 and "\r" not in buf.getvalue()
    assert lines[0].startswith("embed vggish: 3/3 batches in ") and lines[0].endswith(" s, loss 0.5")


def test_track_yields_everything_and_can_be_silent(capsys):
    assert list(track(range(5), desc="x", enabled=False)) == list(range(5))
    assert capsys.readouterr().err == ""
    assert list(track(range(2), desc="clips", unit="clip")) == [0, 1]
    err = capsys.readouterr().err
    assert err.startswith("clips: 2/2 clips in ") and err.count("\n") == 1
