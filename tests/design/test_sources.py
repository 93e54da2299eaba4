"""Parquet batches as pandas frames: the same frames ``RecordBatch.to_pandas`` and Arrow's
dataset scanner give (the reference), with dictionary columns converted once per
dictionary, and read one batch at a time."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from mixedmodels.design.sources import BatchConverter, ParquetSource  # noqa: E402


def _dictionary(codes, values, ordered=False):
    return pa.DictionaryArray.from_arrays(
        pa.array(codes, pa.int32()), pa.array(values), ordered=ordered
    )


def test_batches_convert_as_arrow_converts_them():
    levels = ["b", "a", "c"]
    batches = [
        pa.record_batch(
            {
                "g": _dictionary([0, None, 2, 1], levels, ordered=True),
                "y": pa.array([1.0, 2.0, None, 4.0]),
                "h": pa.DictionaryArray.from_arrays(
                    pa.array([0, 1, 0, 0], pa.int8()), pa.array([7, 9])
                ),
            }
        ),
        pa.record_batch(
            {
                "g": _dictionary([2, 2, 0], levels, ordered=True),
                "y": pa.array([5.0, 6.0, 7.0]),
                "h": pa.DictionaryArray.from_arrays(
                    pa.array([1, 1, 0], pa.int8()), pa.array([9, 7])
                ),
            }
        ),
    ]
    converter = BatchConverter()
    frames = [converter.to_pandas(b) for b in batches]
    for frame, batch in zip(frames, batches, strict=True):
        pd.testing.assert_frame_equal(frame, batch.to_pandas())
    # one dictionary, one categories object for every batch; a new dictionary, new ones
    assert frames[0]["g"].cat.categories is frames[1]["g"].cat.categories
    assert list(frames[1]["h"].cat.categories) == [9, 7]


def _write(path, frame, row_group_size):
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size
    )


def _frame(n, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "g": pd.Categorical.from_codes(rng.integers(0, 4, n), ["w", "x", "y", "z"]),
        }
    )


def test_parquet_source_gives_the_scanners_rows(tmp_path):
    _write(tmp_path / "a.parquet", _frame(1000, 1), 300)
    _write(tmp_path / "b.parquet", _frame(500, 2), 500)
    plain = _frame(200, 3).astype({"g": str})  # a string column where the others have codes
    _write(tmp_path / "c.parquet", plain, 100)
    source = ParquetSource(tmp_path, batch_rows=250)
    frames = list(source.map(lambda f: f, ["y", "g"]))
    assert max(len(f) for f in frames) == 250
    ours = pd.concat(frames)
    reference = source.dataset.to_table(columns=["y", "g"]).to_pandas()
    np.testing.assert_array_equal(ours.index, np.arange(1700))
    np.testing.assert_array_equal(ours["y"], reference["y"])
    np.testing.assert_array_equal(ours["g"].astype(str), reference["g"].astype(str))


@pytest.mark.parametrize("row_groups", [20, 1])  # read ahead in threads; streamed
def test_parquet_source_reads_one_batch_at_a_time(tmp_path, row_groups):
    # one file of 16 MB of doubles: Arrow's scanner would decode it whole
    rng = np.random.default_rng(0)
    n = 1_000_000
    _write(
        tmp_path / "one.parquet",
        pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)}),
        n // row_groups,
    )
    source = ParquetSource(tmp_path / "one.parquet", batch_rows=n // 20)
    held = []

    def look(frame):
        time.sleep(0.02)  # time for any reading ahead
        held.append(pa.total_allocated_bytes())
        return len(frame)

    assert sum(source.map(look, ["a", "b"])) == n
    # a batch is 1.6 MB; the whole file 16 MB (22 MB held when read at once)
    assert max(held) < 10 * 2**20


def _frames(source, columns):
    return [f.copy() for f in source.map(lambda f: f, columns)]


def test_later_passes_take_the_codes_kept_from_the_first(tmp_path):
    _write(tmp_path / "a.parquet", _frame(1000, 1), 300)
    _write(tmp_path / "b.parquet", _frame(500, 2), 500)
    source = ParquetSource(tmp_path, batch_rows=250)
    first = _frames(source, ["y", "g"])
    assert list(source._cache.columns) == ["g"]  # kept after a complete pass
    again = _frames(source, ["g", "y"])
    for a, b in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(a[["g", "y"]], b)
    assert _frames(source, ["g"])[3].equals(first[3][["g"]])  # codes alone, no Parquet read
    source.clear_cache()
    for a, b in zip(first, _frames(source, ["y", "g"]), strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_an_interrupted_pass_keeps_nothing(tmp_path):
    _write(tmp_path / "a.parquet", _frame(1000, 1), 300)
    source = ParquetSource(tmp_path, batch_rows=250)
    for _ in source.map(lambda f: f, ["y", "g"]):
        break
    assert source._cache is None


def test_a_column_cast_to_codes_in_some_files_is_kept_alike(tmp_path):
    # the second file has plain strings: Arrow's scanner casts them to the dataset's
    # dictionary type, and the codes kept from it give the same frames again
    _write(tmp_path / "a.parquet", _frame(300, 1), 300)
    _write(tmp_path / "b.parquet", _frame(200, 3).astype({"g": str}), 200)
    source = ParquetSource(tmp_path, batch_rows=250)
    first = _frames(source, ["y", "g"])
    assert [len(f) for f in first] == [250, 50, 200]
    for a, b in zip(first, _frames(source, ["y", "g"]), strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_numeric_columns_taken_as_numpy_convert_as_arrow_converts_them(tmp_path):
    # plain integers and floats without missing values are taken as numpy arrays (no
    # pandas conversion of the batch); pandas dtypes recorded in the file (nullable Int64
    # and Float64 without missing values), missing values, booleans go through to_pandas
    frame = pd.DataFrame(
        {
            "f": np.arange(6, dtype=float),
            "i": np.arange(6, dtype=np.int32),
            "n": pd.array([1, 2, 3, 4, 5, 6], dtype="Int64"),
            "m": pd.array([1.5, 2.0, 3.0, 4.0, 5.0, 6.0], dtype="Float64"),
            "h": [1.0, None, 3.0, 4.0, 5.0, 6.0],
            "b": [True, False] * 3,
            "g": pd.Categorical(["a", "b"] * 3),
        }
    )
    frame.to_parquet(tmp_path / "t.parquet")
    converter = BatchConverter()
    for batch in pq.ParquetFile(tmp_path / "t.parquet").iter_batches(batch_size=4):
        ours = converter.to_pandas(batch)
        pd.testing.assert_frame_equal(ours, batch.to_pandas())
    plain = pa.record_batch({"x": pa.array([1.0, 2.0]), "k": pa.array([3, 4], pa.int16())})
    pd.testing.assert_frame_equal(converter.to_pandas(plain), plain.to_pandas())
