"""FoleyGen's video-ignoring control (issue 10): ``video="shuffled"`` feeds the model the
video of the clip the `shuffled` baseline pairs with, everything else unchanged.

Debug config (random init, proxy codec) on a 3-clip synthfoley set: seconds on a CPU.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from foleybench.api import FoleybenchError, V2ARequest
from foleybench.baselines.foleygen import FoleyGenModel
from foleybench.baselines.foleygen_configs import get_config, recipe_config
from foleybench.baselines.reference import derangement


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from foleybench.datasets.synthfoley import SynthFoley

    torch.set_num_threads(1)
    return SynthFoley(tmp_path_factory.mktemp("sf"), n_clips=3, seed=4).manifest()


def _req(manifest, clip_id, seed=7):
    from foleybench import media

    v = media.read_video(manifest[clip_id].video, duration_s=0.5)
    return V2ARequest(clip_id, v.frames, v.fps, "", 0.5, 16000, seed)


def test_shuffled_video_generates_what_the_model_makes_from_the_paired_clips_video(data):
    own = FoleyGenModel(get_config("c", "debug"), "foleygen_c.debug", dataset=data, seed=0)
    ctl = FoleyGenModel(get_config("c", "debug", video="shuffled"), "foleygen_c.debug", dataset=data, seed=0)
    other = derangement(data.ids(), 0)
    for cid in data.ids():
        got = ctl.generate([_req(data, cid)])[0].samples
        # the control's output for clip cid = the model's output for cid's request shown
        # the other clip's frames (same generation seed, same length)
        shown = _req(data, other[cid])
        want = own.generate([V2ARequest(cid, shown.frames, shown.fps, "", 0.5, 16000, 7)])[0].samples
        np.testing.assert_array_equal(got, want)
        # what the LM is conditioned on: the paired clip's features, not the clip's own
        n = 8
        torch.testing.assert_close(ctl._features(_req(data, cid), n), own._features(shown, n), rtol=0, atol=0)
        assert not torch.equal(ctl._features(_req(data, cid), n), own._features(_req(data, cid), n))


def test_shuffled_video_is_a_generation_setting_and_needs_the_dataset(data):
    for v in ("c", "p"):
        assert recipe_config(get_config(v, "shuffledvideo_tiny")) == recipe_config(get_config(v, "tiny"))
        assert get_config(v, "shuffledvideo_frame_specific_tiny").attention == "frame"
    ctl = FoleyGenModel(get_config("p", "debug", video="shuffled"), "foleygen_p.debug")
    with pytest.raises(FoleybenchError, match="needs the dataset"):
        ctl.generate([_req(data, data.ids()[0])])
    with pytest.raises(ValueError, match="video"):
        get_config("c", "debug", video="mirror")
