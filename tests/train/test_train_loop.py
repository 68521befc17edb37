"""Trainer basics: learning, schedule, weight-decay groups, accumulation, GAN stages, EMA."""

from __future__ import annotations

import json
import math

import pytest
import torch
from train_toy import TinyGAN, ToyConfig, ToyData, ToyRegressor, make_model, mse_loss

from mambakit.train import (
    EMA,
    TrainConfig,
    Trainer,
    build_param_groups,
    cosine_with_warmup,
    last_logged,
)


def _config(**overrides) -> TrainConfig:
    base = dict(lr=1e-2, warmup_steps=5, max_steps=60, batch_size=8, progress=False)
    return TrainConfig(**{**base, **overrides})


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_loss_decreases_and_checkpoint_loads(tmp_path):
    data = ToyData()
    model = make_model()
    with torch.no_grad():
        before = float(torch.nn.functional.mse_loss(model(data.x), data.y))
    summary = Trainer(model, mse_loss, data, _config(log_every=10), tmp_path).fit()
    assert summary.steps == 60 and summary.stopped_by == "max_steps"

    loaded = ToyRegressor.from_pretrained(tmp_path)
    with torch.no_grad():
        after = float(torch.nn.functional.mse_loss(loaded(data.x), data.y))
    assert after < 0.25 * before, (before, after)

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30, 40, 50, 60]
    assert {"step", "time", "lr", "loss", "logs"} <= set(records[0])
    assert records[-1]["loss"] == pytest.approx(summary.final_loss)
    assert "mse" in records[0]["logs"]

    assert last_logged(tmp_path) == records[-1]
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 70, "ti')  # a line cut by a kill
    assert last_logged(tmp_path) == records[-1]
    assert last_logged(tmp_path / "no-run") is None
    assert summary.describe("runs/toy").endswith("stopped by max_steps); the run is in runs/toy")
    assert summary.describe("r").startswith(f"trained 60 steps in {summary.seconds:.0f} s")


def test_cosine_with_warmup_known_values():
    # Warmup: linear from 1/W to 1.
    assert cosine_with_warmup(0, 10, 110, 0.1) == pytest.approx(0.1)
    assert cosine_with_warmup(4, 10, 110, 0.1) == pytest.approx(0.5)
    assert cosine_with_warmup(9, 10, 110, 0.1) == pytest.approx(1.0)
    # Cosine: peak right after warmup, midpoint (1 + r) / 2, floor r at and after S.
    assert cosine_with_warmup(10, 10, 110, 0.1) == pytest.approx(1.0)
    assert cosine_with_warmup(60, 10, 110, 0.1) == pytest.approx(0.55)
    assert cosine_with_warmup(35, 10, 110, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert cosine_with_warmup(110, 10, 110, 0.1) == pytest.approx(0.1)
    assert cosine_with_warmup(500, 10, 110, 0.1) == pytest.approx(0.1)
    # No warmup at all.
    assert cosine_with_warmup(0, 0, 100, 0.0) == pytest.approx(1.0)


def test_trainer_applies_the_schedule(tmp_path):
    config = _config(max_steps=20, warmup_steps=4, min_lr_ratio=0.2, log_every=1)
    Trainer(make_model(), mse_loss, ToyData(), config, tmp_path).fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for r in records:  # the record of step s (1-based) logs the lr used by step s - 1
        expected = config.lr * cosine_with_warmup(r["step"] - 1, 4, 20, 0.2)
        assert r["lr"] == pytest.approx(expected)


def test_no_weight_decay_on_biases_and_norms(tmp_path):
    model = ToyRegressor(ToyConfig())
    groups = build_param_groups(model, model.parameters(), weight_decay=0.1)
    by_id = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert by_id[id(model.inp.weight)] == 0.1
    assert by_id[id(model.out.weight)] == 0.1
    for p in (model.inp.bias, model.out.bias, model.norm.weight, model.norm.bias):
        assert by_id[id(p)] == 0.0
    assert len(by_id) == len(list(model.parameters()))

    # And the optimizer really uses them: with zero gradients only decay moves weights.
    trainer = Trainer(
        model,
        lambda m, b, s: ((m(b["x"]) * 0.0).sum(), {}),
        ToyData(),
        TrainConfig(max_steps=1, warmup_steps=0, weight_decay=0.5, lr=0.1, progress=False),
        out_dir=tmp_path,
    )
    bias, weight = model.inp.bias.detach().clone(), model.inp.weight.detach().clone()
    trainer._train_step(trainer._batches(0).__iter__().__next__())
    torch.testing.assert_close(model.inp.bias, bias, rtol=0, atol=0)
    torch.testing.assert_close(model.inp.weight, weight * (1 - 0.1 * 0.5))


def test_grad_accumulation_matches_a_bigger_batch(tmp_path):
    a = make_model()
    Trainer(
        a, mse_loss, ToyData(), _config(max_steps=8, batch_size=4, grad_accum=2), tmp_path / "a"
    ).fit()
    b = make_model()
    Trainer(
        b, mse_loss, ToyData(), _config(max_steps=8, batch_size=8, grad_accum=1), tmp_path / "b"
    ).fit()
    c = make_model()  # a different batch must give different weights, or the test proves nothing
    Trainer(
        c, mse_loss, ToyData(), _config(max_steps=8, batch_size=4, grad_accum=1), tmp_path / "c"
    ).fit()
    for (name, wa), wb in zip(_weights(a).items(), _weights(b).values()):
        torch.testing.assert_close(wa, wb, rtol=1e-5, atol=1e-6, msg=name)
    assert any(
        not torch.allclose(wa, wc) for wa, wc in zip(_weights(a).values(), _weights(c).values())
    )


def test_batch_fn_gets_step_and_seeded_generator(tmp_path):
    seen: list[tuple[int, float]] = []

    def batch_fn(step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        x = torch.randn(8, 4, generator=generator)
        seen.append((step, float(x[0, 0])))
        return {"x": x, "y": x.sum(-1)}

    Trainer(make_model(), mse_loss, batch_fn, _config(max_steps=3), tmp_path / "a").fit()
    first = list(seen)
    seen.clear()
    Trainer(make_model(), mse_loss, batch_fn, _config(max_steps=3), tmp_path / "b").fit()
    assert [s for s, _ in first] == [0, 1, 2]
    assert seen == first  # deterministic from (seed, step)
    assert len({v for _, v in first}) == 3  # but different per step


def test_gan_stages_run_in_order_and_touch_only_their_params(tmp_path):
    torch.manual_seed(0)
    model = TinyGAN(ToyConfig())
    gen_params = [*model.inp.parameters(), *model.norm.parameters(), *model.out.parameters()]
    calls: list[str] = []
    snapshots: dict[str, dict[str, torch.Tensor]] = {}

    def gan_loss(m, batch, stage):
        calls.append(stage)
        snapshots[stage] = _weights(m)  # weights as they are when this stage starts
        fake = m(batch["x"]).unsqueeze(-1)
        if stage == "disc":
            real = batch["y"].unsqueeze(-1)
            loss = (m.disc(real) - 1).pow(2).mean() + m.disc(fake.detach()).pow(2).mean()
        else:
            loss = (m.disc(fake) - 1).pow(2).mean()
        return loss, {}

    config = _config(max_steps=1, warmup_steps=0, lr=0.1)
    trainer = Trainer(
        model,
        gan_loss,
        ToyData(),
        config,
        tmp_path,
        optimizers={"disc": model.disc, "gen": gen_params},
    )
    start = _weights(model)
    trainer.fit()
    end = _weights(model)
    assert calls == ["disc", "gen"]
    after_disc = snapshots["gen"]
    # The disc stage moved only the discriminator ...
    for name in start:
        changed = not torch.equal(start[name], after_disc[name])
        assert changed == name.startswith("disc."), name
    # ... and the gen stage moved only the generator (the disc got gradients but no step).
    for name in start:
        changed = not torch.equal(after_disc[name], end[name])
        assert changed == (not name.startswith("disc.")), name
    assert set(trainer.optimizers) == {"disc", "gen"}


def test_ema_weights_are_what_from_pretrained_loads(tmp_path):
    model = make_model()
    ema_ref = EMA(model, 0.8)

    def loss_with_reference_ema(m, batch, stage):
        return mse_loss(m, batch, stage)

    config = _config(max_steps=12, ema_decay=0.8)
    trainer = Trainer(model, loss_with_reference_ema, ToyData(), config, tmp_path)
    # Recompute the EMA independently: theta_ema <- 0.8 theta_ema + 0.2 theta after each step.
    original_step = trainer._train_step

    def step_and_track(batches):
        out = original_step(batches)
        with torch.no_grad():
            for name, p in model.named_parameters():
                ema_ref.shadow[name].mul_(0.8).add_(0.2 * p.detach())
        return out

    trainer._train_step = step_and_track  # type: ignore[method-assign]
    trainer.fit()
    loaded = ToyRegressor.from_pretrained(tmp_path)
    for name, p in loaded.named_parameters():
        torch.testing.assert_close(p, ema_ref.shadow[name], msg=name)
        assert not torch.allclose(p, dict(model.named_parameters())[name]), name


def test_rejects_models_without_pretrained_mixin(tmp_path):
    with pytest.raises(TypeError, match="PretrainedMixin"):
        Trainer(torch.nn.Linear(2, 2), mse_loss, ToyData(), _config(), tmp_path)
    with pytest.raises(ValueError, match="grad_accum"):
        TrainConfig(grad_accum=0)


def test_time_budget_stops_early_and_still_checkpoints(tmp_path):
    summary = Trainer(
        make_model(), mse_loss, ToyData(), _config(max_steps=1000, max_minutes=0.0), tmp_path
    ).fit()
    assert summary.stopped_by == "max_minutes" and summary.steps == 0
    assert ToyRegressor.from_pretrained(tmp_path) is not None
    assert torch.load(tmp_path / "trainer_state.pt", weights_only=False)["step"] == 0


def test_dataloader_workers_give_the_same_run(tmp_path):
    a, b = make_model(), make_model()
    Trainer(a, mse_loss, ToyData(), _config(max_steps=6), tmp_path / "a").fit()
    Trainer(b, mse_loss, ToyData(), _config(max_steps=6, num_workers=1), tmp_path / "b").fit()
    for (name, wa), wb in zip(_weights(a).items(), _weights(b).values()):
        assert torch.equal(wa, wb), name


def test_interrupt_in_the_middle_of_a_step_keeps_the_last_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = TinyGAN(ToyConfig())
    gen_params = [*model.inp.parameters(), *model.norm.parameters(), *model.out.parameters()]
    calls: list[str] = []

    def gan_loss(m, batch, stage):
        calls.append(stage)
        if len(calls) == 2 * 3 + 2:  # the "gen" stage of step 3, after "disc" has stepped
            raise KeyboardInterrupt
        return m(batch["x"]).pow(2).mean() + m.disc(batch["y"].unsqueeze(-1)).pow(2).mean(), {}

    config = _config(max_steps=10, ckpt_every=2)
    trainer = Trainer(
        model,
        gan_loss,
        ToyData(),
        config,
        tmp_path,
        optimizers={"disc": model.disc, "gen": gen_params},
    )
    with pytest.warns(UserWarning, match="middle of step 3"), pytest.raises(KeyboardInterrupt):
        trainer.fit()
    # The half-done step 3 is not saved: the checkpoint is still the one of step 2.
    assert torch.load(tmp_path / "trainer_state.pt", weights_only=False)["step"] == 2


# -- budgets, in-memory runs, any nn.Module ---------------------------------------------------


def test_from_budget_places_warmup_checkpoints_and_logs_by_the_run_length():
    steps = TrainConfig.from_budget(steps=400, lr=1e-3)
    assert (steps.max_steps, steps.max_minutes, steps.lr) == (400, None, 1e-3)
    assert (steps.warmup_steps, steps.ckpt_every, steps.log_every) == (40, 50, 20)
    assert steps.min_lr_ratio == 0.1 and not steps.time_only
    assert (
        TrainConfig.from_budget(steps=5000, max_warmup=200, warmup_divisor=20).warmup_steps == 200
    )
    timed = TrainConfig.from_budget(minutes=3.0, time_only_warmup=20)
    assert timed.time_only and timed.max_steps is None and timed.max_minutes == 3.0
    assert (timed.warmup_steps, timed.min_lr_ratio, timed.ckpt_every) == (20, 1.0, 100)
    both = TrainConfig.from_budget(steps=100, minutes=1.0)
    assert both.max_steps == 100 and both.max_minutes == 1.0 and not both.time_only
    with pytest.raises(ValueError, match="steps, minutes or both"):
        TrainConfig.from_budget()
    with pytest.raises(ValueError, match="max_steps, max_minutes or both"):
        TrainConfig(max_steps=None)


def test_a_time_only_run_keeps_the_peak_rate_after_warmup():
    assert cosine_with_warmup(0, 4, None) == pytest.approx(0.25)
    assert cosine_with_warmup(4, 4, None) == 1.0
    assert cosine_with_warmup(10**9, 4, None) == 1.0


def test_a_time_only_run_stops_on_its_budget(tmp_path):
    config = _config(max_steps=None, max_minutes=0.0)
    summary = Trainer(make_model(), mse_loss, ToyData(), config, tmp_path).fit()
    assert summary.stopped_by == "max_minutes" and summary.steps == 0
    assert ToyRegressor.from_pretrained(tmp_path) is not None


def test_in_memory_training_writes_nothing_and_matches_a_run_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = make_model(), make_model()
    summary = Trainer(a, mse_loss, ToyData(), _config(max_steps=8), out_dir=None).fit()
    Trainer(b, mse_loss, ToyData(), _config(max_steps=8), tmp_path / "run").fit()
    assert summary.steps == 8 and list(tmp_path.iterdir()) == [tmp_path / "run"]
    for (name, wa), wb in zip(_weights(a).items(), _weights(b).values()):
        assert torch.equal(wa, wb), name


class PlainRegressor(torch.nn.Module):
    """An nn.Module that knows nothing of mambakit checkpoints."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x).squeeze(-1)


def test_any_module_trains_with_a_save_function(tmp_path):
    saved: list[tuple[str, dict]] = []

    def save_fn(model, out_dir, extra):
        torch.save(model.state_dict(), out_dir / "plain.pt")
        saved.append((str(out_dir), extra))

    Trainer(
        PlainRegressor(), mse_loss, ToyData(), _config(max_steps=4), tmp_path, save_fn=save_fn
    ).fit()
    assert saved[-1] == (str(tmp_path), {"train_step": 4})
    assert set(torch.load(tmp_path / "plain.pt")) == {"lin.weight", "lin.bias"}
    with pytest.raises(TypeError, match="needs save_fn"):
        Trainer(PlainRegressor(), mse_loss, ToyData(), _config(), tmp_path / "b")
    Trainer(PlainRegressor(), mse_loss, ToyData(), _config(max_steps=2), out_dir=None).fit()
