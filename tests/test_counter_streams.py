"""Counter-based per-teacher streams: the torch int32 mixer equals plain integer arithmetic, all teachers come
from one call, and teacher k's values do not depend on the stack, the draw's size or other counters."""

import pytest
import torch

from pate_lightning.counter_streams import (
    TeacherStreams, keep_mask, mix32, normal, permutation, teacher_keys, uniform, words,
)
from pate_lightning.seeding import Stream, stream_seed

MASK = 0xFFFFFFFF


def lowbias32(x: int) -> int:
    """Wellons' reference, in unbounded Python integers."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK
    return x ^ (x >> 16)


def reference_word(seed: int, teacher_id: int, stream: Stream, counter: int, index: int) -> int:
    key = stream_seed(seed, teacher_id, stream)
    key = lowbias32((key & MASK) ^ lowbias32(key >> 32))
    round_key = lowbias32(key ^ lowbias32((counter & MASK) ^ lowbias32(counter >> 32)))
    return lowbias32(lowbias32(index ^ round_key) ^ round_key)


def test_mixer_wraps_like_unsigned_32_bit_arithmetic():
    inputs = [0, 1, 2, 12345, 0x7FFFFFFF, 0x80000000, 0xDEADBEEF, MASK]
    signed = torch.tensor([v - (1 << 32) if v >= 1 << 31 else v for v in inputs], dtype=torch.int32)
    assert [v & MASK for v in mix32(signed).tolist()] == [lowbias32(v) for v in inputs]


def test_words_equal_the_integer_reference_for_every_teacher_in_one_call():
    ids, counter = [3, 0, 7], (1 << 33) + 5  # a counter past 32 bits
    got = words(teacher_keys(11, ids, Stream.NOISE), counter, 6)
    expected = [[reference_word(11, t, Stream.NOISE, counter, i) for i in range(6)] for t in ids]
    assert [[v & MASK for v in row] for row in got.tolist()] == expected
    # the keep mask's bytes, the uniforms' and the normals' top 24 bits come from these words
    octets = [[(w >> (8 * b)) & 0xFF for w in row for b in range(4)] for row in expected]
    assert keep_mask(teacher_keys(11, ids, Stream.NOISE), counter, (24,), 0.5).tolist() == [[o >= 128 for o in row] for row in octets]
    assert uniform(teacher_keys(11, ids, Stream.NOISE), counter, (6,)).tolist() == [[(w >> 8) / 2**24 for w in row] for row in expected]


def test_a_teachers_values_do_not_depend_on_the_stack_or_the_draw_size():
    stacked = teacher_keys(5, [0, 1, 2], Stream.NOISE)
    alone = teacher_keys(5, [1], Stream.NOISE)
    for draw in (uniform, normal):
        assert torch.equal(draw(alone, 4, (3, 2))[0], draw(stacked, 4, (7, 2))[1, :3])  # a prefix, whatever the padding
        assert not torch.equal(draw(stacked, 4, (3, 2))[1], draw(stacked, 5, (3, 2))[1])  # the counter matters
    assert torch.equal(keep_mask(alone, 2, (5, 3), 0.25)[0], keep_mask(stacked, 2, (9, 3), 0.25)[1, :5])
    assert torch.equal(permutation(alone, 0, 20)[0], permutation(stacked, 0, 20)[1])
    assert not torch.equal(uniform(stacked, 0, (50,))[0], uniform(stacked, 0, (50,))[1])  # teachers differ


def test_distributions():
    keys = teacher_keys(1, range(4), Stream.DROPOUT)
    u = uniform(keys, 0, (50_000,))
    assert u.dtype == torch.float32 and 0 <= float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.005
    z = normal(keys, 0, (50_001,))  # odd: the last pair's second value is dropped
    assert z.shape == (4, 50_001) and abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02
    assert abs(float((z.abs() > 1.96).float().mean()) - 0.05) < 0.005  # the tails too
    for rate in (0.25, 0.5):
        assert abs(float(keep_mask(keys, 0, (50_000,), rate).float().mean()) - (1 - rate)) < 0.01
    order = permutation(keys, 3, 240)
    assert torch.equal(order.sort(1).values, torch.arange(240).expand(4, 240))


def test_keep_mask_refuses_a_rate_it_cannot_give_exactly():
    with pytest.raises(ValueError, match="multiple of 1/256"):
        keep_mask(teacher_keys(1, [0], Stream.DROPOUT), 0, (4,), 0.3)


def test_streams_count_draws_and_checkpoint_the_count():
    streams = TeacherStreams(3, [0, 1], Stream.SHUFFLE)
    assert [streams.next_counter() for _ in range(3)] == [0, 1, 2]
    resumed = TeacherStreams(3, [0, 1], Stream.SHUFFLE)
    resumed.set_state(streams.get_state())
    assert resumed.next_counter() == 3 and torch.equal(resumed.on("cpu"), streams.keys)
