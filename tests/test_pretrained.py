"""mambakit.pretrained: configs through JSON."""

import json
from dataclasses import dataclass

from mambakit.pretrained import config_from_dict, config_to_dict


def test_config_from_dict_turns_json_lists_into_tuples_also_inside_unions():
    @dataclass(frozen=True)
    class Config:
        counts: int | tuple[int, ...] = 2
        widths: tuple[int, int] = (1, 2)
        names: list[str] | None = None

    data = json.loads(json.dumps(config_to_dict(Config(counts=(0, 1), names=["a"]))))
    loaded = config_from_dict(Config, data)
    assert loaded.counts == (0, 1) and loaded.widths == (1, 2)
    assert loaded.names == ["a"]  # a list field stays a list
    assert config_from_dict(Config, {"counts": 3}).counts == 3
