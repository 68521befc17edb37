"""mambakit.results: the meta envelope every result carries, and the one table writer."""

import json
import math

from mambakit.results import Meta, lookup, markdown_table, metrics_table


def test_meta_written_by_collect_reads_back_the_same():
    meta = Meta.collect("mambakit bench ssm", device="cpu")
    payload = json.loads(json.dumps({"rows": [], "meta": meta.as_dict()}))
    assert Meta.read(payload) == meta
    assert meta.command == "mambakit bench ssm" and meta.machine["device"] == "cpu"
    assert "CPU only" in meta.label() and "`mambakit bench ssm`" in meta.label()
    assert Meta.read({"rows": []}) is None
    assert (
        Meta.read({"meta": {"command": "x"}}).label().endswith("commit `unknown`; date unknown._")
    )


def test_markdown_table_formats_cells_one_way():
    table = markdown_table(
        [{"a": 0.01234, "b": None, "c": "text"}], [("a", "A"), ("b", "B"), ("c", "C")]
    )
    assert table.splitlines() == ["| A | B | C |", "|---|---|---|", "| 0.0123 | - | text |"]


def test_markdown_table_column_formats_and_alignment():
    rows = [{"name": "a", "n": 12345, "ms": 0.0905, "x": math.nan}, {"name": "b", "n": None}]
    columns = [
        ("name", "name"),
        ("n", "params", "{:,}"),
        ("ms", "centroid (ms)", lambda s: f"{1000 * s:.0f}"),
        ("x", "x", "{:.3f}"),
    ]
    assert markdown_table(rows, columns, align="lrr").splitlines() == [
        "| name | params | centroid (ms) | x |",
        "|---|---:|---:|---|",  # columns past the end of align are left-aligned
        "| a | 12,345 | 90 | n/a |",
        "| b | - | - | - |",
    ]


def test_metrics_table_is_one_column_per_record_and_one_row_per_metric():
    records = [("full", {"scores": {"acc": 0.5}, "steps": 10.0}), ("data", {"steps": None})]
    metrics = [("accuracy", "scores.acc", "{:.0%}"), ("steps", "steps", "{:.0f}")]
    assert metrics_table(records, metrics, align="lrr").splitlines() == [
        "| metric | full | data |",
        "|---|---:|---:|",
        "| accuracy | 50% | - |",
        "| steps | 10 | - |",
    ]
    assert lookup({"a": {"b": 1}}, "a.b") == 1 and lookup({"a": 1}, "a.b") is None
