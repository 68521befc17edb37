"""``drums calibrate``: tag-only defaults stretched until the model itself rings as long as
the library, checked on stand-in models whose decay is a known function of the gate."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mambakit.drums.pipeline import TagDefaults
from mambakit.drums.training import calibrate_decay_defaults, solve_stretch, stretched_adsr
from mambakit.dsp import ADSR, render_adsr
from mambakit.eval.features import decay_time_s

SR = 8000


def _t10(adsr: ADSR, n: int = SR) -> float:
    curve = render_adsr(adsr, n, SR).numpy()
    return (np.nonzero(curve >= 0.1 * curve.max())[0][-1] + 1) / SR


def test_stretch_one_is_the_envelope_itself_and_shorter_or_longer_scales_its_times():
    adsr = ADSR(0.002, 0.2, 0.0, 0.05, 0.01)
    assert stretched_adsr(adsr, 1.0, SR, SR) == adsr
    half = stretched_adsr(adsr, 0.5, SR, SR)
    assert (half.decay_s, half.hold_s, half.release_s) == pytest.approx((0.1, 0.005, 0.025))
    assert half.attack_s == adsr.attack_s and half.sustain_level == 0.0
    with pytest.raises(ValueError, match="stretch must be > 0"):
        stretched_adsr(adsr, 0.0, SR, SR)


def test_past_the_open_gate_the_stretch_raises_the_sustain_and_keeps_growing_longer():
    adsr = ADSR(0.002, 0.2, 0.0, 0.05)
    lengths, sustains = [], []
    for stretch in (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0):
        s = stretched_adsr(adsr, stretch, SR, SR)
        lengths.append(_t10(s)), sustains.append(s.sustain_level)
        # the level left at the clip's end grows with the stretch, also past the open gate
        assert 0.0 <= s.sustain_level < 1.0
    tail = [
        float(render_adsr(stretched_adsr(adsr, k, SR, SR), SR, SR)[-1]) for k in (8, 16, 32, 64)
    ]
    assert lengths == sorted(lengths) and lengths[-1] == pytest.approx(1.0)
    assert sustains[:3] == [0.0, 0.0, 0.0] and np.all(np.diff(sustains[3:]) > 0)
    assert np.all(np.diff(tail) > 0)
    open_at = [k for k, s in zip((1, 2, 4, 8, 16, 32, 64), sustains) if s > 0][0]
    assert _t10(stretched_adsr(adsr, open_at / 2, SR, SR)) < 1.0  # before it: still closing


@pytest.mark.parametrize(
    "decay_of, target",
    [
        (lambda k: 0.05 * k, 0.2),  # in proportion: one secant step
        (lambda k: 0.08 * k**0.4, 0.3),  # a model that shortens long tails
        (lambda k: 0.02 * k**3, 0.5),  # one that overreacts
        (lambda k: 0.1 if k < 6 else 0.1 * (k / 6) ** 0.7, 0.35),  # flat before it responds
    ],
)
def test_solve_stretch_finds_the_stretch_that_hits_the_target(decay_of, target):
    stretch, made = solve_stretch(decay_of, target, iterations=12, tolerance=0.01)
    assert made == pytest.approx(decay_of(stretch))
    assert made == pytest.approx(target, rel=0.011)


def test_solve_stretch_returns_the_closest_measurement_when_the_target_is_out_of_reach():
    calls = []

    def saturating(k: float) -> float:
        calls.append(k)
        return min(0.05 * k, 0.3)

    stretch, made = solve_stretch(saturating, 0.5, iterations=6)
    assert len(calls) == 6 and made == 0.3 and 0.05 * stretch >= 0.3
    with pytest.raises(ValueError, match="target_s must be > 0"):
        solve_stretch(saturating, 0.0)


class _StandInModel:
    """A model whose output envelope is ``shape(gate ADSR)`` under a 300 Hz tone."""

    sample_rate = SR
    config = SimpleNamespace(n_samples=SR)

    def __init__(self, shape, defaults: dict[str, TagDefaults]) -> None:
        self.shape, self.defaults, self.calls, self.cfgs = shape, defaults, 0, set()

    def generate(self, tag, adsr, steps, seed, n, cfg=1.0):
        self.calls += 1
        self.cfgs.add(cfg)
        t = torch.arange(SR) / SR
        curve = self.shape(adsr) ** cfg * torch.sin(2 * torch.pi * 300 * t)  # guided: shorter
        return curve.expand(n, 1, -1), self.sample_rate

    def decay_s(self, adsr: ADSR, cfg: float = 1.0) -> float:
        return decay_time_s(self.generate(None, adsr, None, 0, 1, cfg)[0][0, 0].numpy(), SR)


def _half_as_long(adsr: ADSR) -> torch.Tensor:
    """Rings for about half of its gate's 10 %-decay time (the gate squared)."""
    return render_adsr(adsr, SR, SR) ** 2


def _capped_decay(adsr: ADSR) -> torch.Tensor:
    """Like the shipped model's cymbal: follows the sustain level but never decays slower
    than a 0.3 s ADSR decay, however slow the request; fades with a 0.5 s time constant."""
    t = torch.arange(SR) / SR
    capped = ADSR(adsr.attack_s, min(adsr.decay_s, 0.3), adsr.sustain_level, 10.0, 10.0)
    return render_adsr(capped, SR, SR) * torch.exp(-t / 0.5)


@pytest.mark.parametrize(
    "shape, library_s", [(_half_as_long, 0.2), (_capped_decay, 0.45), (_capped_decay, 0.05)]
)
def test_calibration_makes_the_model_ring_as_long_as_the_library(shape, library_s):
    base = (0.002, 0.3, 0.0, 0.05, 0.0)
    model = _StandInModel(shape, {"kick": TagDefaults(adsr=base, decay_10_s=library_s)})
    before = model.decay_s(ADSR(*base)) / library_s
    result = calibrate_decay_defaults(model, iterations=8, seeds=1)
    calibrated = ADSR.from_vector(result.defaults["kick"]["adsr"])
    ratio = model.decay_s(calibrated) / library_s
    assert ratio == pytest.approx(result.ratios["kick"]) and ratio == pytest.approx(1.0, abs=0.05)
    assert abs(math.log(before)) > math.log(1.5)  # the stand-in needed the calibration
    assert model.calls <= 8 + 2 and TagDefaults(**result.defaults["kick"]).tonal


def test_calibration_fits_the_envelope_under_the_guidance_it_stores():
    base = (0.002, 0.3, 0.0, 0.05, 0.0)
    model = _StandInModel(_half_as_long, {"kick": TagDefaults(adsr=base, decay_10_s=0.2)})
    result = calibrate_decay_defaults(model, iterations=8, seeds=1, cfg=2.0)
    assert model.cfgs == {2.0} and result.defaults["kick"]["cfg"] == 2.0
    calibrated = ADSR.from_vector(result.defaults["kick"]["adsr"])
    assert model.decay_s(calibrated, cfg=2.0) / 0.2 == pytest.approx(1.0, abs=0.05)
    assert model.decay_s(calibrated, cfg=1.0) / 0.2 > 1.2  # unguided it would ring longer
    model.cfgs.clear()  # without cfg, each tag's stored guidance is kept
    model.defaults = {"kick": TagDefaults(**result.defaults["kick"])}
    again = calibrate_decay_defaults(model, iterations=8, seeds=1)
    assert model.cfgs == {2.0} and again.defaults["kick"]["cfg"] == 2.0


def test_the_capped_model_needs_the_sustain_a_longer_decay_alone_does_not_reach():
    longest = max(
        decay_time_s(_capped_decay(ADSR(0.002, 0.3 * k, 0.0, 0.05)).numpy(), SR)
        for k in (1, 4, 16, 64)
    )
    assert longest < 0.3  # so the old "scale the times" calibration stalled far short of 0.45 s


def test_cli_calibrate_rewrites_the_run_defaults_and_reports_each_ratio(tmp_path, capsys):
    import json
    import re

    from mambakit.cli import main
    from mambakit.drums.config import DrumConfig
    from mambakit.drums.model import DrumDiffusionModel
    from mambakit.drums.pipeline import DEFAULTS_NAME

    torch.manual_seed(0)
    DrumDiffusionModel(DrumConfig.tiny().with_(seconds=0.05)).save_pretrained(tmp_path)
    before = {"midi_note": 36, "adsr": [0.002, 0.01, 0.0, 0.01, 0.0], "decay_10_s": 0.02}
    (tmp_path / DEFAULTS_NAME).write_text(json.dumps({"kick": before}))
    args = ["drums", "calibrate", str(tmp_path), "--iterations", "2", "--seeds", "1"]
    assert main([*args, "--cfg", "2.5"]) == 0
    after = json.loads((tmp_path / DEFAULTS_NAME).read_text())["kick"]
    assert TagDefaults(**after).decay_10_s == 0.02 and after["midi_note"] == 36
    assert after["cfg"] == 2.5
    line = (
        r"kick: decay [\d.]+ s, sustain [\d.]+; rings [\d.]+x the library's 10 % decay of "
        r"0.020 s \(guidance 2.5\)"
    )
    assert re.search(line, capsys.readouterr().out)
    assert main(["drums", "calibrate", str(tmp_path / "nothing")]) != 0
    assert "nothing has no drum_defaults.json" in capsys.readouterr().err
