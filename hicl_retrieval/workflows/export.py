"""Write every live post of an index, with its metadata (and optionally its vector), to Parquet or JSON lines.

So users and tests can read an index without knowing its files: one row a post, in id order,
with the store's columns (``id`` is the vector id, ``post_id`` the dump's) and, with
`vectors`, the stored float16 vector as a list of floats.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.atomic import replacing
from ..core.errors import HiclError
from ..core.files import check_output
from ..index.directory import IndexDir
from ..index.store import COLUMNS

_BATCH = 65536
FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def export_index(path: str | Path, out: str | Path, *, vectors: bool = False) -> int:
    """Write the live posts of the index at `path` to `out` (.parquet, .jsonl); returns how many.

    The file is replaced whole at the end, so an interrupted export leaves no half file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    kind = FORMATS.get(Path(out).suffix.lower())
    if kind is None:
        raise HiclError(f"--out {out}: say the format by the file name, one of {', '.join(FORMATS)}")
    out = check_output(out)
    directory = IndexDir(path)
    manifest = directory.read_manifest()
    stored = directory.open_vectors(manifest) if vectors else None
    written = 0
    with directory.open_store(manifest) as store, replacing(out) as tmp:
        reader = store.con.sql(f"SELECT {', '.join(COLUMNS)} FROM posts ORDER BY id").to_arrow_reader(_BATCH)
        schema = reader.schema
        if stored is not None:
            schema = schema.append(pa.field("vector", pa.list_(pa.float32(), manifest.dim)))
        with open(tmp, "wb") as handle:
            writer = pq.ParquetWriter(handle, schema) if kind == "parquet" else None
            for batch in reader:
                if stored is not None:
                    rows = stored[batch.column(0).to_numpy()].astype(np.float32)
                    column = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), manifest.dim)
                    batch = pa.RecordBatch.from_arrays([*batch.columns, column], schema=schema)
                if writer is not None:
                    writer.write_batch(batch)
                else:
                    for row in batch.to_pylist():
                        if row["created_at"] is not None:
                            row["created_at"] = row["created_at"].isoformat()
                        handle.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
                written += batch.num_rows
            if writer is not None:
                writer.close()
    return written
