import json

import pytest

from pate_lightning.data import shards
from pate_lightning.errors import PateError


def test_partition_is_disjoint_covering_and_balanced():
    parts = shards.partition(60_000, 250, seed=42)
    sizes = {len(v) for v in parts.values()}
    assert sizes == {240}
    flat = [i for v in parts.values() for i in v]
    assert len(flat) == len(set(flat)) == 60_000


def test_partition_is_deterministic_and_seeded():
    assert shards.partition(1000, 7, seed=1) == shards.partition(1000, 7, seed=1)
    assert shards.partition(1000, 7, seed=1) != shards.partition(1000, 7, seed=2)


def test_load_or_create_writes_once_and_reuses(tmp_path):
    path = tmp_path / "shard_indices.json"
    first = shards.load_or_create(path, 100, 5, seed=3)
    assert json.loads(path.read_text()) == {str(k): v for k, v in first.items()}
    assert shards.load_or_create(path, 100, 5, seed=3) == first
    # other settings are refused, not silently overridden by the file (tests/test_faults.py); None reuses it
    with pytest.raises(PateError, match="seed 99"):
        shards.load_or_create(path, 100, 5, seed=99)
    assert shards.load_or_create(path, 100, None, seed=99) == first


@pytest.mark.parametrize(
    "content, message",
    [
        ({"0": [1, 2], "1": [2, 3]}, "index 2 is also in teacher 0"),
        ({"0": [1, 200]}, "index 200 is out of range"),
        ({"0": [1, "x"]}, "is not an integer"),
        ({"zero": [1]}, "is not a non-negative integer"),
        ({"0": []}, "non-empty list"),
        ([1, 2], "non-empty JSON object"),
    ],
)
def test_invalid_shard_files_name_teacher_and_index(tmp_path, content, message):
    path = tmp_path / "shard_indices.json"
    path.write_text(json.dumps(content))
    before = path.read_bytes()
    with pytest.raises(PateError, match=message) as info:
        shards.load_or_create(path, 100, 2, seed=0)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before


def test_malformed_json_is_a_clear_error(tmp_path):
    path = tmp_path / "shard_indices.json"
    path.write_text("{not json")
    with pytest.raises(PateError, match="not valid JSON"):
        shards.load_or_create(path, 100, 2, seed=0)


def test_select_teachers_by_ids_range_and_unknown(tmp_path):
    parts = shards.partition(100, 10, seed=0)
    path = tmp_path / "s.json"
    assert shards.select_teachers(parts, None, None, None, path) == list(range(10))
    assert shards.select_teachers(parts, [3, 1], None, None, path) == [3, 1]
    assert shards.select_teachers(parts, None, 4, 3, path) == [4, 5, 6]
    with pytest.raises(PateError, match=r"teacher ids \[12\] are not in the shard file"):
        shards.select_teachers(parts, [1, 12], None, None, path)


def test_metadata_has_seed_format(tmp_path):
    import torch

    path = shards.write_metadata(tmp_path, 3, torch.tensor([0, 1, 1, 9]), tmp_path / "shard_indices.json")
    meta = json.loads(path.read_text())
    assert meta["teacher_id"] == 3 and meta["shard_size"] == 4
    assert meta["class_distribution"]["1"] == 2 and meta["class_distribution"]["9"] == 1
    assert set(meta) == {"teacher_id", "shard_size", "class_distribution", "shard_path"}
