"""Row sources: where the rows of a model come from, one chunk at a time.

A :class:`RowSource` hands out pandas chunks of the columns a model reads and maps a
function over them, serially on this machine or in parallel on a Dask cluster; the results
of the function (small: partial sums whose size does not depend on the number of rows) come
back to the caller to be added.  Three sources:

* :class:`FrameSource`: an in-memory DataFrame cut into chunks of a given number of rows
  (a test of exactness: any chunking must give the in-memory fit);
* :class:`ParquetSource`: a Parquet file, a directory of them, or a glob, read record batch
  by record batch with pyarrow (no Dask needed);
* :class:`DaskSource`: a ``dask.dataframe.DataFrame``; each partition is handled where it
  lives, by whatever scheduler is active (threads, processes, a ``distributed.Client``).
"""

from __future__ import annotations

import glob
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import pandas as pd

from mixedmodels.errors import ArgumentError, ColumnNotFoundError, DataError

T = TypeVar("T")


@runtime_checkable
class RowSource(Protocol):
    """Chunks of rows, and a map over them."""

    @property
    def columns(self) -> list[str]:
        """The column names."""
        ...

    @property
    def n_chunks(self) -> int:
        """How many chunks :meth:`map` calls its function on (for progress bars)."""
        ...

    def map(self, function: Callable[[pd.DataFrame], T], columns: list[str]) -> Iterator[T]:
        """``function(chunk)`` for every chunk of ``columns``, results as they come."""
        ...


def _check_columns(wanted: list[str], present: list[str]) -> None:
    missing = [c for c in wanted if c not in present]
    if missing:
        raise ColumnNotFoundError(
            f"column {missing[0]!r} is not in the data (columns: {', '.join(present)})"
        )


class FrameSource:
    """An in-memory DataFrame in chunks of ``chunk_rows`` rows."""

    def __init__(self, data: pd.DataFrame, chunk_rows: int = 1_000_000):
        if not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ArgumentError(f"chunk_rows must be a positive integer, not {chunk_rows!r}")
        self.data = data
        self.chunk_rows = chunk_rows

    @property
    def columns(self) -> list[str]:
        """The column names."""
        return [str(c) for c in self.data.columns]

    @property
    def n_chunks(self) -> int:
        """How many chunks :meth:`map` calls its function on."""
        return max(1, -(-len(self.data) // self.chunk_rows))

    def map(self, function, columns):
        """``function(chunk)`` for every chunk of ``columns``, results as they come."""
        _check_columns(columns, self.columns)
        frame = self.data[columns]
        for start in range(0, max(len(frame), 1), self.chunk_rows):
            yield function(frame.iloc[start : start + self.chunk_rows])


def _parquet_files(path: str | Path) -> list[str]:
    text = str(path)
    if any(ch in text for ch in "*?["):
        files = sorted(glob.glob(text, recursive=True))
    elif Path(text).is_dir():
        files = sorted(str(p) for p in Path(text).rglob("*.parquet"))
    else:
        files = [text] if Path(text).exists() else []
    if not files:
        raise DataError(f"no Parquet files found at {text!r}")
    return files


class ParquetSource:
    """Parquet files read record batch by record batch (``batch_rows`` rows at most)."""

    def __init__(self, path: str | Path, batch_rows: int = 1_000_000):
        try:
            import pyarrow.dataset as ds
        except ImportError as exc:  # pragma: no cover - pyarrow is in the test extra
            raise ArgumentError(
                "reading Parquet needs pyarrow: pip install 'mixedmodels[parquet]'"
            ) from exc
        self.files = _parquet_files(path)
        try:
            self.dataset = ds.dataset(self.files, format="parquet")
        except Exception as exc:  # pyarrow raises its own types for unreadable files
            raise DataError(f"cannot read Parquet data at {str(path)!r}: {exc}") from exc
        self.batch_rows = batch_rows
        self._cache: _CodeCache | None = None
        self._dictionaries = _Dictionaries()

    @property
    def columns(self) -> list[str]:
        """The column names."""
        return list(self.dataset.schema.names)

    @property
    def n_chunks(self) -> int:
        """How many record batches :meth:`map` reads."""
        rows = self.dataset.count_rows()
        return max(1, -(-rows // self.batch_rows))

    def map(self, function, columns):
        """``function(batch)`` for every record batch of ``columns``, results as they come;
        each batch indexed by its rows' positions in the data (0 for the first row of the
        first file).

        The codes of dictionary-encoded columns read in a complete pass are kept on disk
        (:meth:`clear_cache` drops them) and later passes take them from there: Arrow
        decodes a column chunk's whole dictionary for every batch (all subjects' names
        in every batch for a subject column written with its full dictionary), which
        would make a pass cost the number of batches times the number of levels."""
        import pyarrow as pa

        _check_columns(columns, self.columns)
        cache = self._cache
        cached = [c for c in columns if cache is not None and c in cache.columns]
        read = [c for c in columns if c not in cached]
        recording = None if cached else _CodeCache()
        if not cached:
            batches = self._batches(read)
        else:  # the other columns in batches of the kept codes' sizes
            batches = _rechunk(self._batches(read), cache.rows) if read else iter(cache.rows)
        start, k = 0, 0  # rows so far, non-empty batches so far
        converter = BatchConverter()
        pool = pa.default_memory_pool()
        for batch in batches:
            n = batch if isinstance(batch, int) else batch.num_rows
            if not n:
                continue
            if cached:
                frame = (
                    pd.DataFrame(index=pd.RangeIndex(n))
                    if isinstance(batch, int)
                    else converter.to_pandas(batch)
                )
                for name in cached:
                    frame[name] = cache.columns[name].categorical(k, n, frame.index)
                frame = frame[columns]
            else:
                frame = converter.to_pandas(batch, recording.recorder(n))
            frame.index = pd.RangeIndex(start, start + n)
            start += n
            k += 1
            del batch
            result = function(frame)
            del frame
            # Arrow's allocator keeps freed batches' pages for reuse: hundreds of MB
            # beside the model's own memory; hand them back batch by batch
            pool.release_unused()
            yield result
        if recording is not None and recording.columns:
            self._cache = recording  # a complete pass: its codes serve the next ones

    def clear_cache(self) -> None:
        """Forget the dictionary columns' codes kept by :meth:`map` (their disk space is
        freed) and the dictionaries decoded for plain reads (1M names: ~150 MB)."""
        self._cache = None
        self._dictionaries = _Dictionaries()

    def _batches(self, columns: list[str]):
        """The record batches of ``columns``, file by file, row group by row group.

        Arrow's dataset scanner decodes a whole file ahead of its consumer (every row group
        of it, whatever its read-ahead settings): for one large file that is the whole
        data in memory.  Here each row group is read by a file reader of its own, two at a
        time in threads (Arrow decodes without the GIL, and decoding a dictionary column
        costs its whole dictionary per row group), at most :data:`READ_AHEAD` row groups
        ahead of the consumer.  A file whose row groups are larger than two batches is
        streamed batch by batch instead, and a file whose columns differ in type from the
        dataset's schema goes through the scanner, which converts them as it does for
        every file."""
        import pyarrow as pa

        target = pa.schema([self.dataset.schema.field(c) for c in columns]).remove_metadata()
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="parquet")
        pending: deque = deque()
        try:
            for work in self._reads(columns, target):
                if callable(work):  # a row group: read in a thread
                    pending.append(pool.submit(work))
                    while len(pending) > READ_AHEAD:
                        yield from pending.popleft().result()
                    continue
                while pending:  # a streamed file: what was read before comes first
                    yield from pending.popleft().result()
                yield from work
            while pending:
                yield from pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True)

    def _reads(self, columns: list[str], target):
        """What :meth:`_batches` reads, in order: a function reading one row group's
        batches, or an iterator of a whole file's batches."""
        import pyarrow as pa
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        for file in self.files:
            reader = pq.ParquetFile(file, pre_buffer=False)
            arrow = reader.schema_arrow
            same = all(c in arrow.names for c in columns) and pa.schema(
                [arrow.field(c) for c in columns]
            ).remove_metadata().equals(target)
            meta = reader.metadata
            sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            if not same:
                one = ds.dataset([file], schema=self.dataset.schema, format="parquet")
                yield one.to_batches(columns=columns, batch_size=self.batch_rows)
            elif max(sizes, default=0) > 2 * self.batch_rows:  # held whole when read ahead
                # pages read through a buffer, not each column's whole chunk at once
                streamed = pq.ParquetFile(file, pre_buffer=False, buffer_size=2**20)
                yield streamed.iter_batches(batch_size=self.batch_rows, columns=columns)
            else:
                for i in range(len(sizes)):
                    plain = _plain_columns(meta, i, columns, arrow)
                    yield partial(
                        _row_group, file, meta, i, columns, self.batch_rows,
                        plain, self._dictionaries,
                    )


#: Row groups read ahead of the one being handled (each held decoded until its turn).
READ_AHEAD = 2


def _row_group(
    file: str,
    metadata,
    i: int,
    columns: list[str],
    batch_rows: int,
    plain: dict[str, tuple[int, int]] | None = None,
    dictionaries: _Dictionaries | None = None,
) -> list:
    """Row group ``i`` of ``file`` as record batches of at most ``batch_rows`` rows.

    The dictionary columns in ``plain`` (name -> the byte range of the row group's
    dictionary page) are read as plain strings and coded against the dictionary of an
    earlier row group with the same dictionary page (:class:`_Dictionaries`): Arrow
    would decode and hash the whole dictionary again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(file, metadata=metadata, pre_buffer=False)
    coded = {}
    for name, pages in (plain or {}).items():
        array = dictionaries.coded(file, metadata, i, name, pages)
        if array is not None:
            coded[name] = array
    if not coded:
        return list(
            reader.iter_batches(
                batch_size=batch_rows, row_groups=[i], columns=columns, use_threads=False
            )
        )
    rest = [c for c in columns if c not in coded]
    table = reader.read_row_group(i, columns=rest, use_threads=False) if rest else None
    arrays = [coded[c] if c in coded else table.column(c) for c in columns]
    whole = pa.Table.from_arrays(arrays, names=columns)
    return whole.to_batches(max_chunksize=batch_rows)


#: A dictionary column's row group is read as plain strings (then coded against a
#: dictionary decoded once) when its dictionary page has more than this many bytes per
#: row: Arrow decodes and hashes the whole dictionary for every row group (about 85 ms
#: per MB of page), which then costs more than reading and coding the rows' strings
#: (about 50 ms per million rows, 100 ms with the rest of the row group).  Measured on
#: benchmarks/scale.py's data, row groups of 1M rows with 100k / 300k / 1M subjects in
#: every dictionary (0.47 / 1.4 / 4.6 MB pages): 40 / 124 / 380 ms per row group read
#: by Arrow, 117 / 107 / 157 ms read as plain strings.
PLAIN_READ_BYTES_PER_ROW = 1.0


def _plain_columns(metadata, i: int, columns: list[str], arrow) -> dict[str, tuple[int, int]]:
    """The dictionary columns of row group ``i`` worth reading as plain strings
    (:data:`PLAIN_READ_BYTES_PER_ROW`), with their dictionary pages' byte ranges."""
    import pyarrow as pa

    group = metadata.row_group(i)
    out = {}
    positions = {group.column(k).path_in_schema: k for k in range(group.num_columns)}
    for name in columns:
        field = arrow.field(name)
        if not (pa.types.is_dictionary(field.type) and pa.types.is_string(field.type.value_type)):
            continue
        if name not in positions:
            continue
        chunk = group.column(positions[name])
        start, end = chunk.dictionary_page_offset, chunk.data_page_offset
        if not chunk.has_dictionary_page or not start or end <= start:
            continue
        if end - start > PLAIN_READ_BYTES_PER_ROW * max(group.num_rows, 1):
            out[name] = (start, end)
    return out


class _Dictionaries:
    """The dictionaries of string dictionary columns, decoded once per distinct dictionary
    page (compared byte for byte) and shared by the reader threads.

    A Parquet writer stores a dictionary page in every row group's column chunk; pandas
    categoricals are written with their whole category list in each, so a subject column
    carries every subject's name in every row group.  :meth:`coded` reads a row group's
    column as plain strings, codes its distinct values (few per row group) through the
    dictionary of an earlier row group whose dictionary page has the same bytes, and
    returns the array Arrow's dictionary read would give."""

    def __init__(self):
        self.lock = threading.Lock()
        self.known: dict[str, list[tuple[bytes, object, pd.Index]]] = {}

    def _reference(self, file: str, metadata, i: int, name: str, page: bytes):
        """The dictionary (and its lookup index) of this page: a known one, or decoded
        from row group ``i`` (None: this row group's own read is the answer)."""
        import pyarrow.parquet as pq

        with self.lock:
            for known, dictionary, index in self.known.get(name, []):
                if known == page:
                    return dictionary, index, None
            reader = pq.ParquetFile(file, metadata=metadata, pre_buffer=False)
            column = reader.read_row_group(i, columns=[name], use_threads=False).column(0)
            column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
            dictionary = column.dictionary
            index = pd.Index(dictionary.to_numpy(zero_copy_only=False), dtype=object)
            if not index.is_unique:  # codes through the index need one entry per value
                return None, None, column
            entries = self.known.setdefault(name, [])
            if len(entries) >= 4:  # dictionaries that change: keep the latest few
                entries.pop(0)
            entries.append((page, dictionary, index))
            return dictionary, index, column

    def coded(self, file: str, metadata, i: int, name: str, pages: tuple[int, int]):
        """Row group ``i``'s column ``name`` as Arrow's dictionary read gives it, or None
        (read it as usual) when a value is not in the known dictionary."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        with open(file, "rb") as handle:
            handle.seek(pages[0])
            page = handle.read(pages[1] - pages[0])
        dictionary, index, own = self._reference(file, metadata, i, name, page)
        if own is not None:
            return own
        reader = pq.ParquetFile(
            file, metadata=metadata, pre_buffer=False, binary_type=pa.large_binary()
        )
        values = reader.read_row_group(i, columns=[name], use_threads=False).column(0)
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
        if not pa.types.is_large_string(values.type):
            return None
        encoded = pc.dictionary_encode(values)
        found = index.get_indexer(encoded.dictionary.to_numpy(zero_copy_only=False))
        if found.size and found.min() < 0:
            return None
        indices = pc.take(pa.array(found.astype(np.int32)), encoded.indices)  # nulls kept
        return pa.DictionaryArray.from_arrays(indices, dictionary)


def _changed() -> DataError:
    return DataError("the Parquet data changed between passes over it (other numbers of rows)")


def _rechunk(batches, sizes: list[int]):
    """The rows of ``batches`` (record batches) again, in batches of ``sizes`` rows.

    A file's reader cuts batches where a dictionary column's row group ends, so columns
    read without those (their codes kept from an earlier pass) come in other batches."""
    import pyarrow as pa

    stream = iter(batches)
    pending: list = []
    have = 0
    for n in sizes:
        while have < n:
            batch = next(stream, None)
            if batch is None:
                raise _changed()
            if batch.num_rows:
                pending.append(batch)
                have += batch.num_rows
        taken, need = [], n
        while need:
            first = pending[0]
            if first.num_rows <= need:
                taken.append(pending.pop(0))
                need -= first.num_rows
            else:
                taken.append(first.slice(0, need))
                pending[0] = first.slice(need)
                need = 0
        have -= n
        if len(taken) == 1:
            yield taken[0]
        else:
            yield pa.Table.from_batches(taken).combine_chunks().to_batches()[0]
    if have or any(batch.num_rows for batch in stream):
        raise _changed()


class BatchConverter:
    """Record batches to pandas as ``RecordBatch.to_pandas`` makes them, with the level
    dictionaries of dictionary-encoded columns converted once per dictionary.

    A Parquet file's dictionary columns come with the same (often complete) dictionary in
    every batch; converting its strings for every batch would cost as much as the rows.
    Here a column's categorical dtype is made once and reused while the batches'
    dictionaries are equal (compared in Arrow), and each batch contributes only its codes,
    so later steps see the same categories object in every chunk."""

    def __init__(self):
        self._dtypes: dict[str, tuple] = {}  # column -> (arrow dictionary, pandas dtype)

    def to_pandas(self, batch, record: Callable | None = None) -> pd.DataFrame:
        """``batch.to_pandas()``, dictionary columns from codes and a cached dtype.

        ``record(coded)``, when given, receives the names, codes and dtypes of the columns
        made from codes (:class:`_CodeCache`)."""
        import pyarrow as pa

        names = batch.schema.names
        coded = {
            name: batch.column(i)
            for i, name in enumerate(names)
            if pa.types.is_dictionary(batch.schema.field(i).type)
            and batch.column(i).dictionary.null_count == 0
        }
        made = {name: self.codes(name, array) for name, array in coded.items()}
        if record is not None:
            record(made)
        numeric = _numpy_columns(batch)
        if not coded and not numeric:
            return batch.to_pandas()
        plain = [name for name in names if name not in coded and name not in numeric]
        frame = batch.select(plain).to_pandas() if plain else None
        index = frame.index if frame is not None else pd.RangeIndex(batch.num_rows)
        columns = {}
        for name in names:
            if name in made:
                codes, dtype = made[name]
                values = pd.Categorical.from_codes(codes, dtype=dtype, validate=False)
                columns[name] = pd.Series(values, index=index, name=name, copy=False)
            elif name in numeric:  # a copy: writable, and Arrow's buffer can go
                values = np.array(batch.column(name).to_numpy(zero_copy_only=True))
                columns[name] = pd.Series(values, index=index, name=name, copy=False)
            else:
                columns[name] = frame[name]
        return pd.DataFrame(columns, index=index, copy=False)

    def codes(self, name: str, array) -> tuple[np.ndarray, pd.CategoricalDtype]:
        """A dictionary column's codes (-1: missing) and its pandas dtype (made once per
        dictionary)."""
        import pyarrow.compute as pc

        cached = self._dtypes.get(name)
        if cached is None or not (
            cached[0] is array.dictionary or cached[0].equals(array.dictionary)
        ):
            empty = array.slice(0, 0).to_pandas()  # the dtype to_pandas gives, no rows
            cached = (array.dictionary, empty.dtype)
            self._dtypes[name] = cached
        indices = array.indices if array.null_count == 0 else pc.fill_null(array.indices, -1)
        return indices.to_numpy(zero_copy_only=False), cached[1]


def _numpy_columns(batch) -> set[str]:
    """The columns of ``batch`` that ``to_pandas`` turns into plain numpy numbers (integers
    and floats without missing values, with no other pandas dtype recorded for them), so
    they can be taken as numpy arrays without pandas' conversion of the whole batch."""
    import pyarrow as pa

    recorded = {}
    meta = batch.schema.pandas_metadata
    if meta:
        recorded = {c.get("name"): c.get("numpy_type") for c in meta.get("columns", [])}
    out = set()
    for i, field in enumerate(batch.schema):
        kind = field.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            continue
        if pa.types.is_float16(kind) or batch.column(i).null_count:
            continue
        numpy_type = np.dtype(kind.to_pandas_dtype()).name
        if recorded.get(field.name, numpy_type) != numpy_type:
            continue
        out.add(field.name)
    return out


class _CachedCodes:
    """One dictionary column's codes, batch after batch, in an unnamed temporary file
    (removed when closed or when the process ends), with each batch's pandas dtype."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()
        self.offsets = [0]
        self.dtypes: list[pd.CategoricalDtype] = []
        self.code_types: list[np.dtype] = []

    def append(self, codes: np.ndarray, dtype: pd.CategoricalDtype) -> None:
        codes.tofile(self.file)
        self.offsets.append(self.offsets[-1] + codes.nbytes)
        self.dtypes.append(dtype)
        self.code_types.append(codes.dtype)

    def categorical(self, k: int, n: int, index: pd.Index) -> pd.Series:
        """Batch ``k`` (of ``n`` rows) as the column it was read as."""
        self.file.seek(self.offsets[k])
        codes = np.fromfile(self.file, dtype=self.code_types[k], count=n)
        values = pd.Categorical.from_codes(codes, dtype=self.dtypes[k], validate=False)
        return pd.Series(values, index=index, copy=False)


class _CodeCache:
    """The codes of every dictionary column of a complete pass (:meth:`ParquetSource.map`)
    and the rows of its batches."""

    def __init__(self):
        self.rows: list[int] = []
        self.columns: dict[str, _CachedCodes] = {}

    def recorder(self, n: int) -> Callable:
        """What :meth:`BatchConverter.to_pandas` calls for the next batch (``n`` rows)."""
        first = not self.rows
        self.rows.append(n)

        def record(made: dict) -> None:
            if first:
                self.columns = {name: _CachedCodes() for name in made}
            for name in list(self.columns):
                if name in made:
                    self.columns[name].append(*made[name])
                else:  # not made from codes in this batch: not kept
                    self.columns.pop(name).file.close()

        return record


class DaskSource:
    """A Dask DataFrame: the function runs on each partition where the scheduler puts it,
    and only its (small) results travel back."""

    def __init__(self, data):
        self.data = data

    @property
    def columns(self) -> list[str]:
        """The column names."""
        return [str(c) for c in self.data.columns]

    @property
    def n_chunks(self) -> int:
        """The number of partitions."""
        return int(self.data.npartitions)

    def map(self, function, columns):
        """``function(partition)`` for every partition of ``columns``, computed where the
        scheduler runs it; results in partition order."""
        import dask

        _check_columns(columns, self.columns)
        parts = self.data[columns].to_delayed()
        tasks = [dask.delayed(function)(part) for part in parts]
        yield from dask.compute(*tasks)


def row_source(data, chunk_rows: int | None = None) -> RowSource | None:
    """The row source for ``data`` when it is not an in-memory DataFrame (a Parquet path or
    a Dask DataFrame), or a :class:`FrameSource` when ``chunk_rows`` is given; None for an
    in-memory frame fitted as usual."""
    if isinstance(data, pd.DataFrame):
        return FrameSource(data, chunk_rows) if chunk_rows is not None else None
    if isinstance(data, str | Path):
        return ParquetSource(data, chunk_rows or 1_000_000)
    if is_dask_frame(data):
        return DaskSource(data)
    return None


def is_dask_frame(data) -> bool:
    """A Dask DataFrame (only possible when the user has imported dask.dataframe)."""
    module = sys.modules.get("dask.dataframe")
    return module is not None and isinstance(data, module.DataFrame)
