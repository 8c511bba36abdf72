"""The end-of-run summary: every left-out clip named, shared reasons on one line."""
from foleybench.report import GROUP_AT, score_summary


def test_summary_groups_shared_reasons_and_names_every_clip() -> None:
    silent = {f"c{i}": f"pred/c{i}.wav: audio is silent" for i in range(GROUP_AT + 2)}
    doc = {"pairing": {"n_scored_pairs": 9, "warnings": {**silent, "odd": "mono at 8 kHz"},
                       "invalid_pred": {"x": "unreadable"}},
           "metrics": {"fd_x": {"excluded": [["y", "too short"]], "value": 1.0}},
           "dataset": {"n_clips": 10}}
    text = score_summary(doc)
    lines = text.splitlines()
    assert lines[0].startswith("foleybench: summary: 9 clip(s) scored of 10")
    grouped = [ln for ln in lines if "audio is silent" in ln]
    assert len(grouped) == 1 and f"({len(silent)} clips): pred/{{id}}.wav: audio is silent" in grouped[0]
    assert all(cid in grouped[0] for cid in silent)
    assert "  warning odd: mono at 8 kHz" in lines
    assert "  invalid prediction x: unreadable" in lines
    assert "  fd_x: excluded y: too short" in lines


def test_short_ids_are_not_replaced_inside_words() -> None:
    doc = {"pairing": {"warnings": {"a": "pred/a.wav: audio is silent", "b": "pred/b.wav: audio is silent"}}}
    lines = score_summary(doc).splitlines()
    assert "  warning a: pred/a.wav: audio is silent" in lines
    assert "  warning b: pred/b.wav: audio is silent" in lines
