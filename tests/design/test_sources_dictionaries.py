"""Dictionary columns read as plain strings and coded through a dictionary decoded once
(:class:`mixedmodels.design.sources._Dictionaries`): the record batches are those of
Arrow's own dictionary read (the reference), whatever the dictionaries of the row groups
and files (equal, different, changing back), with missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from mixedmodels.design import sources  # noqa: E402
from mixedmodels.design.sources import ParquetSource  # noqa: E402

NAMES = [f"s{i:03d}" for i in range(60)]


def _group(n: int, seed: int, dictionary: list[str], nulls: bool) -> pa.Table:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, len(dictionary) // 2, n)  # half the dictionary unused
    mask = (rng.uniform(size=n) < 0.1) if nulls else None
    g = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32(), mask=mask), dictionary)
    return pa.table({"y": rng.normal(size=n), "g": g})


def _write(path, groups: list[pa.Table]) -> None:
    with pq.ParquetWriter(path, groups[0].schema) as writer:
        for table in groups:
            writer.write_table(table)  # one row group each


@pytest.fixture
def folder(tmp_path):
    d1 = NAMES
    d2 = NAMES[::-1] + ["t0", "t1"]  # another order and other names
    d3 = NAMES[10:40]
    _write(tmp_path / "a.parquet", [_group(90, 1, d1, True), _group(70, 2, d1, False),
                                    _group(80, 3, d2, True)])
    _write(tmp_path / "b.parquet", [_group(50, 4, d3, False)])
    _write(tmp_path / "c.parquet", [_group(60, 5, d1, True), _group(40, 6, d2, False)])
    return tmp_path


def _read(folder, per_row: float, monkeypatch, batch_rows: int = 1000):
    monkeypatch.setattr(sources, "PLAIN_READ_BYTES_PER_ROW", per_row)
    source = ParquetSource(folder, batch_rows=batch_rows)
    return source, list(source._batches(["g", "y"]))


@pytest.mark.parametrize("batch_rows", [1000, 45])  # row groups in one or more batches
def test_plain_reads_give_arrows_dictionary_batches(folder, monkeypatch, batch_rows):
    reference_source, reference = _read(folder, float("inf"), monkeypatch, batch_rows)
    assert not reference_source._dictionaries.known  # large dictionaries only
    source, ours = _read(folder, 0.0, monkeypatch, batch_rows)
    assert [b.num_rows for b in ours] == [b.num_rows for b in reference]
    for mine, theirs in zip(ours, reference, strict=True):
        assert mine.equals(theirs)  # same dictionary values, same codes, same nulls
    # three distinct dictionary pages, each decoded once (d1 again in file c: reused)
    assert len(source._dictionaries.known["g"]) == 3
    # row groups of one dictionary share one dictionary (its memory)
    address = [b.column(0).dictionary.buffers()[2].address for b in ours]
    if batch_rows == 1000:  # a batch per row group
        assert address[0] == address[1] == address[4] != address[2] == address[5]


def test_plain_reads_give_the_same_frames_and_kept_codes(folder, monkeypatch):
    monkeypatch.setattr(sources, "PLAIN_READ_BYTES_PER_ROW", float("inf"))
    reference = [f.copy() for f in ParquetSource(folder, 64).map(lambda f: f, ["y", "g"])]
    monkeypatch.setattr(sources, "PLAIN_READ_BYTES_PER_ROW", 0.0)
    source = ParquetSource(folder, 64)
    for _ in range(2):  # the first pass reads the codes, the second takes the kept ones
        ours = [f.copy() for f in source.map(lambda f: f, ["y", "g"])]
        assert len(ours) == len(reference)
        for mine, theirs in zip(ours, reference, strict=True):
            pd.testing.assert_frame_equal(mine, theirs)


def test_a_value_missing_from_the_known_dictionary_is_read_as_usual(folder, monkeypatch):
    # a dictionary page seen before whose lookup lacks a value (as when a writer fell back
    # to plain pages): that row group is read by Arrow's dictionary read
    monkeypatch.setattr(sources, "PLAIN_READ_BYTES_PER_ROW", 0.0)
    source = ParquetSource(folder / "a.parquet")
    known = source._dictionaries
    list(source._batches(["g"]))
    page, dictionary, index = known.known["g"][0]
    known.known["g"][0] = (page, dictionary, index[:1])  # values other than s000 absent
    reference = pq.ParquetFile(folder / "a.parquet").read_row_group(1, columns=["g"])
    meta = pq.ParquetFile(folder / "a.parquet").metadata
    pages = sources._plain_columns(meta, 1, ["g"], reference.schema)["g"]
    assert known.coded(str(folder / "a.parquet"), meta, 1, "g", pages) is None
    batches = sources._row_group(str(folder / "a.parquet"), meta, 1, ["g"], 1000,
                                 {"g": pages}, known)
    assert pa.Table.from_batches(batches).equals(reference)
