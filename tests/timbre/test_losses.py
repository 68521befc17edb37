import pytest
import torch

from mambakit.timbre.discriminators import TimbreDiscriminator
from mambakit.timbre.losses import (
    GeneratorLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from mambakit.timbre.model import TimbreConfig, TimbreUNet
from mambakit.timbre.training import make_loss, timbre_gan


def test_discriminator_output_shapes():
    disc = TimbreDiscriminator(width=1 / 16)
    outputs = disc(torch.randn(2, 1, 3000))
    assert len(outputs) == 5 + 3  # periods 2, 3, 5, 7, 11 and three scales
    for score, features in outputs[:5]:  # MPD: features are 2-D maps [B, C, T/p', p]
        assert score.shape[0] == 2 and score.ndim == 2
        assert len(features) == 6 and features[0].ndim == 4
    periods = [f[0].shape[-1] for _, f in outputs[:5]]
    assert periods == [2, 3, 5, 7, 11]
    lengths = [s.shape[1] for s, _ in outputs[5:]]
    assert lengths[0] > lengths[1] > lengths[2]  # MSD on raw, 2x and 4x pooled audio
    for _, features in outputs[5:]:
        assert len(features) == 7 and features[0].shape[:2] == (2, 4)


def test_least_squares_losses_have_their_optima():
    ones = [(torch.ones(2, 5), [torch.ones(2, 3)])]
    zeros = [(torch.zeros(2, 5), [torch.zeros(2, 3)])]
    assert discriminator_loss(ones, zeros) == 0  # D(real)=1, D(fake)=0
    assert discriminator_loss(zeros, ones) == 2
    assert generator_adversarial_loss(ones) == 0
    assert feature_matching_loss(ones, ones) == 0 and feature_matching_loss(ones, zeros) == 1


@pytest.mark.parametrize("term", ["mel", "stft", "adv", "fm"])
def test_gradient_reaches_the_generator_from_every_term(term):
    torch.manual_seed(0)
    gen = TimbreUNet(TimbreConfig.tiny())
    disc = TimbreDiscriminator(width=1 / 16)
    content, style = torch.randn(2, 1, 2048) * 0.3, torch.randn(2, 1, 1500) * 0.3
    target = torch.randn(2, 1, 2048) * 0.3
    pred = gen(content, style)
    _, terms = GeneratorLoss(16000)(pred, target, fake=disc(pred), real=disc(target))
    terms[term].backward()
    grads = [p.grad for p in gen.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    # the first encoder stem and the head both receive gradient: it flows through the U-Net
    assert gen.head[1].parametrizations.weight.original1.grad.abs().sum() > 0
    stem = gen.encoders[0].stem.conv[1].parametrizations.weight.original1
    assert stem.grad.abs().sum() > 0


def test_disc_stage_updates_only_the_discriminator_and_gen_stage_both_sides():
    torch.manual_seed(0)
    model = timbre_gan(TimbreUNet(TimbreConfig.tiny()), TimbreDiscriminator(width=1 / 16))
    batch = {k: torch.randn(2, 1, 1024) * 0.3 for k in ("content", "style", "target")}
    loss_fn = make_loss("transfer", 16000)
    loss, logs = loss_fn(model, batch, "disc")
    loss.backward()
    assert all(p.grad is None for p in model["generator"].parameters())
    assert any(p.grad is not None for p in model["discriminator"].parameters())
    model.zero_grad(set_to_none=True)
    loss, logs = loss_fn(model, batch, "gen")
    loss.backward()
    assert set(logs) == {"g_mel", "g_stft", "g_adv", "g_fm"}
    expected = 45 * logs["g_mel"] + 10 * logs["g_stft"] + logs["g_adv"] + 2 * logs["g_fm"]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert any(p.grad is not None for p in model["generator"].parameters())


def test_the_trained_module_keeps_the_parameter_names_older_runs_saved():
    # trainer_state.pt of runs trained with the former TimbreGAN wrapper holds
    # "generator.*" and "discriminator.*": they must load into timbre_gan's module as they are
    gen, disc = TimbreUNet(TimbreConfig.tiny()), TimbreDiscriminator(width=1 / 16)
    model = timbre_gan(gen, disc)
    expected = {f"generator.{k}" for k in gen.state_dict()}
    expected |= {f"discriminator.{k}" for k in disc.state_dict()}
    assert set(model.state_dict()) == expected
