"""mambakit.utils: parsing of user input."""

import pytest

from mambakit.utils import parse_int_list


def test_parse_int_list_reads_lists_ranges_and_steps():
    assert parse_int_list("0,24,40") == (0, 24, 40)
    assert parse_int_list("48-54:3,60") == (48, 51, 54, 60)
    assert parse_int_list("35-38") == (35, 36, 37, 38)
    with pytest.raises(ValueError, match="48-72:2"):
        parse_int_list("a,b")
