"""Reads a Wafer offline log with pyarrow, pandas and DuckDB; prints one JSON summary per reader.

Usage: offline_read.py DIR VIEW   (see scripts/offline-read.sh)
"""

import json
import sys

import duckdb
import pyarrow.dataset as ds


def summary(df):
    """Counts and the latest row per user of a pandas frame of one view's rows."""
    latest = df.sort_values(["as_of", "written_at"]).groupby("user_id").tail(1)
    return {
        "rows": int(len(df)),
        "users": int(df["user_id"].nunique()),
        "tombstones": int(df["tombstone"].sum()),
        "event_count_sum": int(df["event_count_1h"].fillna(0).sum()),
        "latest": {
            r.user_id: [int(r.as_of.value // 1_000_000), bool(r.tombstone),
                        None if r.tombstone else int(r.event_count_1h)]
            for r in latest.itertuples()
        },
    }


def main():
    root, view = sys.argv[1], sys.argv[2]
    # pyarrow + pandas: the hive partitions become columns.
    dataset = ds.dataset(root, format="parquet", partitioning="hive")
    table = dataset.to_table(filter=ds.field("view") == view)
    frame = table.to_pandas()
    assert str(frame["as_of"].dtype).startswith("datetime64") and "UTC" in str(frame["as_of"].dtype), frame["as_of"].dtype
    out = {"pyarrow": summary(frame)}
    # DuckDB: glob + hive partitioning, event time as TIMESTAMPTZ.
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    frame = con.execute(
        "SELECT * FROM read_parquet(?, hive_partitioning = true) WHERE view = ?",
        [f"{root}/**/*.parquet", view],
    ).df()
    out["duckdb"] = summary(frame)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
