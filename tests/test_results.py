"""mambakit.results: the meta envelope every result carries, and the one table writer."""

import json

from mambakit.results import Meta, markdown_table


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
