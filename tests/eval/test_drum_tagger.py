"""The independent tag classifier of ``eval drums``: descriptors, fit, and its accuracy on
clips it never saw."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mambakit.drums.procedural import synthesize
from mambakit.eval.drum_tagger import (
    DrumTagClassifier,
    fit_tag_classifier,
    group_cross_validated_accuracy,
    kit_cross_validation,
    tag_descriptor,
)

SR = 22050
TAGS8 = ("kick", "snare", "clap", "closed_hat", "open_hat", "tom", "rim", "cymbal")


def _clips(tags, n, seed, seconds=0.5):
    """``n`` procedural one-shots per tag, from random streams no other seed shares."""
    out, labels = [], []
    for k, tag in enumerate(tags):
        for i in range(n):
            out.append(synthesize(tag, np.random.default_rng([seed, k, i]), SR, seconds))
            labels.append(tag)
    return out, labels


@pytest.fixture(scope="module")
def procedural():
    return _clips(TAGS8, 6, seed=1), _clips(TAGS8, 4, seed=2)


def test_fitted_on_procedural_drums_it_names_the_tag_of_fresh_ones(procedural):
    (train, train_tags), (test, test_tags) = procedural
    clf = fit_tag_classifier(train, train_tags, SR)
    assert clf.classes == sorted(TAGS8)
    predicted = clf.predict(np.stack([tag_descriptor(x, SR) for x in test]))
    assert np.mean(np.array(predicted) == np.array(test_tags)) >= 0.9


def test_the_fit_is_deterministic_and_recognises_its_own_library(procedural):
    (train, tags), _ = procedural
    d = np.stack([tag_descriptor(x, SR) for x in train])
    a, b = DrumTagClassifier().fit(d, tags), DrumTagClassifier().fit(d, tags)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.predict(d) == tags


def test_a_rare_tag_is_not_drowned_by_a_common_one():
    low, _ = _clips(("kick",), 24, seed=3)
    tom, _ = _clips(("tom",), 2, seed=3)
    d = np.stack([tag_descriptor(x, SR) for x in low + tom])
    clf = DrumTagClassifier().fit(d, ["kick"] * 24 + ["tom"] * 2)
    assert clf.predict(d[-2:]) == ["tom", "tom"]


def test_the_descriptor_ignores_level_and_has_one_length_for_any_clip_length():
    x = synthesize("snare", np.random.default_rng(0), SR, 0.5)
    np.testing.assert_allclose(tag_descriptor(0.1 * x, SR), tag_descriptor(x, SR), atol=1e-3)
    short = tag_descriptor(x[: SR // 10], SR)
    assert short.shape == tag_descriptor(x, SR).shape and np.all(np.isfinite(short))
    assert np.all(np.isfinite(tag_descriptor(np.zeros(SR // 4), SR)))


def test_leave_one_group_out_cannot_name_a_tag_only_the_left_out_group_has():
    (kicks, _), (hats, _), (snares, _) = (
        _clips((t,), 4, seed=5) for t in ("kick", "closed_hat", "snare")
    )
    clips = kicks + hats + snares
    d = np.stack([tag_descriptor(x, SR) for x in clips])
    labels = ["kick"] * 4 + ["closed_hat"] * 4 + ["snare"] * 4
    groups = ["a", "b"] * 2 + ["a", "b"] * 2 + ["b"] * 4  # only kit b has snares
    accuracy = group_cross_validated_accuracy(d, labels, groups)
    assert accuracy <= 8 / 12  # the 4 snares can never be right
    assert accuracy == pytest.approx(8 / 12)  # kicks and hats are told apart across kits


def test_misuse_is_an_error():
    with pytest.raises(RuntimeError, match="not fitted"):
        DrumTagClassifier().predict(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="as many labels"):
        DrumTagClassifier().fit(np.zeros((2, 3)), ["kick"])


class _Library:
    """Stands in for a ``DrumDataset`` read from a ``kit/tag/x.wav`` tree."""

    def __init__(self, root, kits):
        self.config = SimpleNamespace(sr=SR)
        self.paths, self.tags, self.audio = [], [], []
        for kit, seed in kits:
            clips, tags = _clips(("kick", "closed_hat", "snare"), 3, seed)
            for i, (clip, tag) in enumerate(zip(clips, tags)):
                self.paths.append(root / kit / tag / f"{i}.wav")
                self.tags.append(tag)
                self.audio.append(torch.from_numpy(clip)[None])

    def __len__(self):
        return len(self.tags)

    def __getitem__(self, i):
        return {"audio": self.audio[i]}


def test_kit_cross_validation_leaves_out_each_kit_folder(tmp_path):
    summary = kit_cross_validation(_Library(tmp_path, [("a", 6), ("b", 7)]), tmp_path)
    assert summary["kits"] == 2 and summary["clips"] == 18 and summary["l2"] == 0.1
    assert summary["leave_one_kit_out_accuracy"] >= 8 / 9
    one = kit_cross_validation(_Library(tmp_path / "a", [("", 6)]), tmp_path / "a")
    assert one["kits"] == 1 and one["leave_one_kit_out_accuracy"] is None
