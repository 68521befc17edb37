import torch

from mambakit.drums.config import DrumConfig, band_state_size
from mambakit.drums.schedule import StructuredDiffusionSchedule


def test_endpoints_exact():
    s = StructuredDiffusionSchedule(100, alpha_max=0.7)
    assert s.beta(0).item() == 0.0 and s.beta(100).item() == 1.0
    assert s.alpha(0).item() == 0.0 and abs(s.alpha(100).item() - 0.7) < 1e-7
    assert torch.all(s.betas[1:] >= s.betas[:-1])


def test_eq2_and_eq3():
    s = StructuredDiffusionSchedule(50)
    g = torch.Generator().manual_seed(0)
    x, n, sine = (torch.randn(2, 1, 64, generator=g) for _ in range(3))
    mask = torch.rand(2, 1, 64, generator=g)
    t = torch.tensor([10, 40])
    out = s.add_noise(x, n, sine, mask, t)
    for i in range(2):
        b, a = s.beta(t[i]), s.alpha(t[i])
        torch.testing.assert_close(out[i], x[i] + n[i] * b + sine[i] * a * mask[i])
    env = torch.rand(2, 64, generator=g)
    e = s.adsr_at(env, t)
    torch.testing.assert_close(e[1], env[1] * s.beta(40) + (1 - s.beta(40)))
    # eq. 3 as written: beta=0 (t=0) gives a flat 1, beta=1 (t=T) gives the envelope itself
    torch.testing.assert_close(s.adsr_at(env, 0), torch.ones(2, 64))
    torch.testing.assert_close(s.adsr_at(env, 50), env)


def test_oracle_sampling_recovers_clean_and_is_deterministic():
    s = StructuredDiffusionSchedule(1000)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(1, 1, 32, generator=g)
    sine = torch.randn(1, 1, 32, generator=g)
    mask = torch.ones(1, 1, 32)

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(1, 1, 32, generator=gen)
        x = s.add_noise(torch.zeros_like(x0), noise, sine, mask, 1000)
        for t in s.set_timesteps(5).tolist():
            b, a = s.beta(t), s.alpha(t)
            eps = (x - x0 - sine * a * mask) / b  # oracle
            x = s.step((x0, eps), t, x, sine, mask, generator=gen, eta=0.3)
        return x

    torch.testing.assert_close(run(3), x0)
    torch.testing.assert_close(run(4), run(4), rtol=0, atol=0)


def test_strength_and_state_sizes():
    s = StructuredDiffusionSchedule(1000)
    s.set_timesteps(10)
    assert len(s.timesteps_from_strength(0.0)) == 0
    assert len(s.timesteps_from_strength(0.6)) == 6
    assert band_state_size(43.0, 44100) == 160 and band_state_size(22050, 44100) == 8
    sizes = DrumConfig.tiny().band_state_sizes()
    assert sizes == sorted(sizes)
