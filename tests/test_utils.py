"""mambakit.utils: parsing of user input."""

import pytest

from mambakit.utils import parse_int_list, parse_seconds, read_document


def test_parse_int_list_reads_lists_ranges_and_steps():
    assert parse_int_list("0,24,40") == (0, 24, 40)
    assert parse_int_list("48-54:3,60") == (48, 51, 54, 60)
    assert parse_int_list("35-38") == (35, 36, 37, 38)
    with pytest.raises(ValueError, match="48-72:2"):
        parse_int_list("a,b")


def test_parse_seconds_reads_units_and_refuses_a_negative_duration():
    assert parse_seconds("2ms") == 0.002 and parse_seconds("0.3s") == 0.3
    assert parse_seconds("441 samples", 44100) == 0.01 and parse_seconds(0.5) == 0.5
    with pytest.raises(ValueError, match="cannot be negative: '-5ms'"):
        parse_seconds("-5ms")
    with pytest.raises(ValueError, match="not a duration: 'soon'"):
        parse_seconds("soon")


def test_read_document_names_the_file_in_each_failure(tmp_path):
    import yaml

    path = tmp_path / "spec.yaml"
    with pytest.raises(FileNotFoundError, match="no spec here"):
        read_document(path, "no spec here")
    path.write_text("[1, 2")
    with pytest.raises(ValueError, match=r"spec\.yaml: not valid JSON \("):
        read_document(path, "-")
    with pytest.raises(KeyError, match=r"spec\.yaml: not valid YAML \("):
        read_document(path, "-", yaml.safe_load, "YAML", (OSError, KeyError))
    path.write_text("pads: [a]")
    assert read_document(path, "-", yaml.safe_load, "YAML") == {"pads": ["a"]}
