"""Train the toy model from the command line: used by the kill/resume and DDP tests.

    python train_toy_script.py OUT_DIR --max-steps 40 --ckpt-every 10 [--sleep 0.05] [--dump F]

Under torchrun every rank dumps its final weights to ``{dump}.rank{RANK}.pt``.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from train_toy import (
    TinyGAN,
    ToyConfig,
    ToyData,
    lsgan_loss,
    make_model,
    noisy_mse_loss,
    script_config,
)

from mambakit.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--ckpt-every", type=int, default=10)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--dump", default=None)
    parser.add_argument("--also-gan", action="store_true", help="then a two-optimizer run")
    args = parser.parse_args()

    def slow_loss(model, batch, stage):
        time.sleep(args.sleep)  # slow enough for the test to kill us mid-run
        return noisy_mse_loss(model, batch, stage)

    config = script_config(args.max_steps, args.ckpt_every, grad_accum=args.grad_accum)
    trainer = Trainer(make_model(), slow_loss, ToyData(), config, args.out_dir)
    trainer.fit()
    rank = os.environ.get("RANK", "0")
    if args.dump:
        torch.save(trainer.model.state_dict(), f"{args.dump}.rank{rank}.pt")
    if args.also_gan:
        torch.manual_seed(0)
        gan = TinyGAN(ToyConfig())
        optimizers = {"disc": gan.disc.parameters(), "gen": gan.generator_parameters()}
        gan_dir = os.path.join(args.out_dir, "gan")
        Trainer(gan, lsgan_loss, ToyData(), config, gan_dir, optimizers=optimizers).fit()
        if args.dump:
            torch.save(gan.state_dict(), f"{args.dump}.gan.rank{rank}.pt")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
