"""Exact resume: in-process, after a real SIGKILL, and DDP across two processes (gloo)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_toy import ToyData, ToyRegressor, make_model, noisy_mse_loss, script_config

from mambakit.train import Trainer

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "train_toy_script.py"


def _assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def _uninterrupted(out_dir: Path, max_steps: int, ckpt_every: int) -> dict[str, torch.Tensor]:
    model = make_model()
    Trainer(model, noisy_mse_loss, ToyData(), script_config(max_steps, ckpt_every), out_dir).fit()
    return model.state_dict()


def test_interrupt_then_resume_in_a_new_trainer_is_bitwise_exact(tmp_path):
    reference = _uninterrupted(tmp_path / "full", 20, 10)

    # Ctrl-C (a real SIGINT) during step 13, after the checkpoint at step 10: the trainer
    # finishes that step and saves the 13 completed steps on the way out.
    calls = 0

    def interrupted_loss(model, batch, stage):
        nonlocal calls
        calls += 1
        if calls == 13:
            os.kill(os.getpid(), signal.SIGINT)
        return noisy_mse_loss(model, batch, stage)

    run = tmp_path / "split"
    with pytest.raises(KeyboardInterrupt):
        config = script_config(20, 10, log_every=1)
        Trainer(make_model(), interrupted_loss, ToyData(), config, run).fit()
    assert torch.load(run / "trainer_state.pt", weights_only=False)["step"] == 13

    # A fresh model and trainer continue to 20 from the run directory.
    resumed = make_model(seed=99)  # different init: everything must come from the checkpoint
    config = script_config(20, 10, log_every=1)
    summary = Trainer(resumed, noisy_mse_loss, ToyData(), config, run).fit()
    assert summary.steps == 20
    _assert_bitwise_equal(resumed.state_dict(), reference)
    _assert_bitwise_equal(ToyRegressor.from_pretrained(run).state_dict(), reference)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 21))  # each step logged once across both runs

    # resume=False starts over and ignores the checkpoint.
    fresh = make_model()
    config = script_config(20, 10, resume=False)
    Trainer(fresh, noisy_mse_loss, ToyData(), config, tmp_path / "split").fit()
    _assert_bitwise_equal(fresh.state_dict(), reference)


def test_sigkill_after_a_checkpoint_then_resume(tmp_path):
    run = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), str(run), "--max-steps", "40", "--ckpt-every", "5"]
    proc = subprocess.Popen([*cmd, "--sleep", "0.1"], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (run / "trainer_state.pt").exists():
            assert proc.poll() is None, "training subprocess died before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = torch.load(run / "trainer_state.pt", weights_only=False)
    assert 5 <= state["step"] < 40, "the kill should land mid-run"

    subprocess.run(cmd, env=env, check=True, timeout=120)
    # The reference runs in a subprocess too, with the same thread count: a different
    # number of intra-op threads may sum in another order and change the last bit.
    full = tmp_path / "full"
    subprocess.run([sys.executable, str(SCRIPT), str(full), "--max-steps", "40", "--ckpt-every",
                    "5"], env=env, check=True, timeout=120)  # fmt: skip
    reference = ToyRegressor.from_pretrained(full).state_dict()
    _assert_bitwise_equal(ToyRegressor.from_pretrained(run).state_dict(), reference)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_ranks_end_with_identical_weights(tmp_path):
    # grad_accum=2 also exercises no_sync() on the first micro-batch of each step.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    dump = tmp_path / "weights"
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(SCRIPT), str(tmp_path / "run"), "--max-steps", "6", "--ckpt-every", "3",
        "--grad-accum", "2", "--dump", str(dump), "--also-gan",
    ]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, timeout=120, cwd=HERE)
    rank0 = torch.load(f"{dump}.rank0.pt")
    rank1 = torch.load(f"{dump}.rank1.pt")
    _assert_bitwise_equal(rank0, rank1)
    # They trained (weights moved), and rank 0 saved what it holds.
    assert any(not torch.equal(v, make_model().state_dict()[k]) for k, v in rank0.items())
    _assert_bitwise_equal(ToyRegressor.from_pretrained(tmp_path / "run").state_dict(), rank0)
    # The two-optimizer (GAN) run averages gradients by hand: ranks agree there too.
    gan0, gan1 = torch.load(f"{dump}.gan.rank0.pt"), torch.load(f"{dump}.gan.rank1.pt")
    _assert_bitwise_equal(gan0, gan1)
    # Two ranks see different batches, so they must differ from one process with the same seed.
    single = _uninterrupted(tmp_path / "single", 6, 3)
    assert any(not torch.equal(single[k], rank0[k]) for k in rank0)
