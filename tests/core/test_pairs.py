"""Prompt -> response rows for SFT, by hand: the loss on the response only, and a stream that resumes exactly."""
import numpy as np
import pytest

from jaxsuite.core.pairs import PairBatches, pack_pairs


def test_rows_by_hand():
    out = pack_pairs([[1, 2, 3], [4]], [[5, 6], [7, 8, 9]], seq_len=6, pad_id=0)
    assert out["inputs"].tolist() == [[1, 2, 3, 5, 0], [4, 7, 8, 0, 0]]
    assert out["targets"].tolist() == [[2, 3, 5, 6, 0], [7, 8, 9, 0, 0]]
    # the mask is on the targets that are response tokens: 5, 6 and 7, 8, 9
    assert out["loss_mask"].tolist() == [[0, 0, 1, 1, 0], [1, 1, 1, 0, 0]]
    assert out["segment_ids"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]
    assert out["positions"].tolist() == [list(range(5))] * 2


def test_the_stream_resumes_where_it_stopped_and_bad_pairs_are_named():
    pairs = PairBatches([[1, 2]] * 3 + [[3]], [[4], [5, 6], [7], [8, 9]], batch_size=2, seq_len=8, seed=3)
    first = iter(pairs)
    seen = [next(first) for _ in range(5)]
    resumed = iter(pairs)
    resumed.set_state(first.get_state() | {"step": 3})
    for expected in seen[3:]:
        got = next(resumed)
        assert all(np.array_equal(got[k], expected[k]) for k in expected)
    with pytest.raises(ValueError, match="longest prompt \\+ response has 4 tokens; seq_len is 3"):
        PairBatches([[1, 2]], [[3, 4]], batch_size=1, seq_len=3, seed=0)
    with pytest.raises(ValueError, match="pair 1 has an empty prompt or response"):
        PairBatches([[1], [2]], [[3], []], batch_size=1, seq_len=4, seed=0)
    with pytest.raises(ValueError, match="one response per prompt"):
        PairBatches([[1]], [], batch_size=1, seq_len=4, seed=0)
