import pytest

from mambakit.drums.tags import TAGS, read_tags_csv, tag_from_path, tag_index, tokenize


@pytest.mark.parametrize(
    "path, tag",
    [
        ("Kicks/BD_808_long.wav", "kick"),
        ("hats/closedHat03.flac", "closed_hat"),
        ("808/OH_01.wav", "open_hat"),
        ("808 CH.wav", "closed_hat"),
        ("HH Open 2.wav", "open_hat"),
        ("kicks/snare_layer.wav", "snare"),  # file name wins over folder
        ("Toms/Floor Tom 1.aif", "tom"),
        ("crash1.aif", "cymbal"),
        ("perc/shaker_2.wav", "perc"),
        ("RimShot.wav", "rim"),
        ("SD-909.wav", "snare"),
        ("hihat.wav", "closed_hat"),
        ("fx/riser.wav", "fx"),
    ],
)
def test_tag_from_path(path, tag):
    assert tag_from_path(path) == tag


@pytest.mark.parametrize("path", ["chair.wav", "ohm/bdx/sdr.wav", "misc/thing.wav", "Bedroom.wav"])
def test_short_keywords_only_match_whole_tokens(path):
    assert tag_from_path(path) is None


def test_tokenize_splits_camel_case_and_digits():
    assert tokenize("closedHat03_Dry") == ["closed", "hat", "dry"]


def test_csv_override_relative_to_csv(tmp_path):
    (tmp_path / "tags.csv").write_text("path,tag\nsub/a.wav,snare\nb.wav,KICK\n")
    out = read_tags_csv(tmp_path / "tags.csv")
    assert out == {
        (tmp_path / "sub/a.wav").resolve(): "snare",
        (tmp_path / "b.wav").resolve(): "kick",
    }


def test_csv_unknown_tag_names_file_and_line(tmp_path):
    (tmp_path / "t.csv").write_text("a.wav,cowbellz\n")
    with pytest.raises(ValueError, match=r"t\.csv:1: unknown tag 'cowbellz'"):
        read_tags_csv(tmp_path / "t.csv")


def test_tag_index_order():
    assert [tag_index(t) for t in TAGS] == list(range(len(TAGS)))
    with pytest.raises(ValueError, match="unknown drum tag"):
        tag_index("banjo")
