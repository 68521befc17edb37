"""Synthetic token probes that need no codec: local dynamics vs long-range recall.

Every probe sequence (one codebook, ``vocab_size`` ids) is

``[motif (m tokens)] [Markov filler (gap tokens)] [the same motif again] [Markov filler ...]``

* *local* positions (the filler) follow a sparse first-order Markov chain: each id has
  ``branching`` possible successors, so the best achievable loss there is the chain's
  conditional entropy (``<= log(branching)``), learnable from the previous token alone;
* *recall* positions (the repeated motif) are uniform random in the first occurrence and
  fully determined in the second: a model that carries the motif across the ``gap`` drives
  their loss to 0, a model that cannot pays ``log(vocab_size)`` nats per token.

The first occurrence of the motif is unpredictable by design and is excluded from both groups.
:func:`run_probe` trains each backbone at the same (matched) parameter count, for the same
number of steps on the same batches, and reports the loss on both groups.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mambakit.results import markdown_table
from mambakit.utils import resolve_device

from .model import MusicLM, MusicLMConfig, count_parameters, preset

__all__ = [
    "ProbeCorpus",
    "ProbeResult",
    "probe_markdown",
    "probe_preset",
    "run_probe",
    "train_tokens",
]


@dataclass(frozen=True)
class ProbeCorpus:
    """A generator of probe sequences (see the module docstring).

    Args:
        vocab_size: ids per token.
        motif_len: ``m``, tokens in the recurring motif.
        gap: Markov tokens between the motif and its recurrence (the recall distance).
        tail: Markov tokens after the recurrence.
        branching: successors per id in the Markov chain.
        seed: fixes the transition matrix.
    """

    vocab_size: int = 32
    motif_len: int = 8
    gap: int = 64
    tail: int = 16
    branching: int = 2
    seed: int = 0

    @property
    def seq_len(self) -> int:
        return 2 * self.motif_len + self.gap + self.tail

    def transition_matrix(self) -> Tensor:
        """Row-stochastic ``[V, V]``: ``branching`` random successors per id, Dirichlet(1)
        weights."""
        g = torch.Generator().manual_seed(self.seed)
        V = self.vocab_size
        matrix = torch.zeros(V, V)
        for i in range(V):
            successors = torch.randperm(V, generator=g)[: self.branching]
            weights = -torch.rand(self.branching, generator=g).clamp_min(1e-6).log()
            matrix[i, successors] = weights / weights.sum()
        return matrix

    def conditional_entropy(self) -> float:
        """The chain's entropy rate in nats, ``sum_i pi_i H(P[i])`` (``pi``: stationary)."""
        P = self.transition_matrix().double()
        pi = torch.full((self.vocab_size,), 1.0 / self.vocab_size, dtype=torch.float64)
        for _ in range(500):  # power iteration to the stationary distribution
            pi = pi @ P
        row_entropy = -(P * P.clamp_min(1e-300).log()).sum(dim=1)
        return float(pi @ row_entropy)

    def masks(self) -> tuple[Tensor, Tensor]:
        """Boolean ``[seq_len]`` masks of the local (Markov) and recall (second motif)
        positions."""
        m, gap = self.motif_len, self.gap
        local = torch.zeros(self.seq_len, dtype=torch.bool)
        recall = torch.zeros(self.seq_len, dtype=torch.bool)
        local[m : m + gap] = True
        recall[m + gap : 2 * m + gap] = True
        local[2 * m + gap :] = True
        return local, recall

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """``tokens [batch_size, seq_len]`` (long)."""
        P = self.transition_matrix()
        m, gap, V = self.motif_len, self.gap, self.vocab_size
        motif = torch.randint(0, V, (batch_size, m), generator=generator)
        out = torch.empty(batch_size, self.seq_len, dtype=torch.long)
        out[:, :m] = motif
        previous = motif[:, -1]
        for t in range(m, self.seq_len):
            if m + gap <= t < 2 * m + gap:
                out[:, t] = motif[:, t - m - gap]
            else:
                out[:, t] = torch.multinomial(P[previous], 1, generator=generator)[:, 0]
            previous = out[:, t]
        return out


@dataclass
class ProbeResult:
    """Held-out losses (nats) of one backbone: on the local and the recall positions, and
    ``loss``, the mean over both (every scored position counts once)."""

    backbone: str
    n_parameters: int
    steps: int
    loss_local: float
    loss_recall: float
    final_train_loss: float
    loss: float = math.nan


def probe_preset(corpus: ProbeCorpus, backbone: str, scale: str = "tiny") -> MusicLMConfig:
    """The parameter-matched :func:`preset` of ``backbone`` for one-codebook probe tokens."""
    return preset(
        backbone,
        scale,
        pattern="parallel",
        n_codebooks=1,
        codebook_size=corpus.vocab_size,
        max_seqlen=corpus.seq_len + 1,
    )


def train_tokens(
    model: MusicLM,
    batches: list[Tensor] | None = None,
    corpus: ProbeCorpus | None = None,
    steps: int = 100,
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = False,
) -> float:
    """Train ``model`` for ``steps`` on ``batches`` (cycled) or fresh corpus samples with
    the one :class:`~mambakit.train.Trainer`, in memory (no checkpoints).

    Probes, tests and ``eval lm-compare``'s step timing need seconds-long, identical
    training for every backbone; running it through the Trainer means the loop timed is the
    loop ``lm train`` runs. Schedule: 10 warmup steps, cosine to 0, gradients clipped at 1,
    no weight decay. Token batches are ``[B, S]`` (one codebook) or ``[B, n_streams, S]``.
    Returns the last training loss (nats).
    """
    from mambakit.train import TrainConfig, Trainer, unwrap_model

    if batches is None and corpus is None:
        raise ValueError("train_tokens needs batches or a corpus")

    def batch_fn(step: int, generator: torch.Generator) -> Tensor:
        if batches is not None:
            return batches[step % len(batches)]
        return corpus.sample(batch_size, generator)  # type: ignore[union-attr]

    def loss_fn(m: torch.nn.Module, tokens: Tensor, stage: str) -> tuple[Tensor, dict]:
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(1)  # [B, 1, S]: one stream
        loss, _ = unwrap_model(m).loss(tokens)
        return loss, {}

    config = TrainConfig(
        lr=lr, weight_decay=0.0, warmup_steps=min(10, steps), max_steps=steps,
        min_lr_ratio=0.0, grad_clip=1.0, seed=seed, resume=False, progress=progress,
        device=str(model.start.device), log_every=steps, ckpt_every=steps,
    )  # fmt: skip
    summary = Trainer(model, loss_fn, batch_fn, config, out_dir=None).fit()
    model.eval()
    return summary.final_loss


@torch.no_grad()
def position_losses(model: MusicLM, tokens: Tensor) -> Tensor:
    """Per-position cross-entropy ``[B, S]`` (nats) of one-codebook ``tokens [B, S]``."""
    tokens = tokens.to(model.start.device)
    logits = model(tokens.unsqueeze(1))[:, 0]  # [B, S, V]
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")


def run_probe(
    backbones: list[str] | tuple[str, ...] = ("transformer", "mamba2", "hybrid"),
    steps: int = 300,
    gap: int = 64,
    corpus: ProbeCorpus | None = None,
    scale: str = "tiny",
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    eval_batch: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict:
    """Train every backbone (parameter-matched preset at ``scale``) for ``steps`` on the same
    probe batches and measure the loss on local vs recall positions of held-out sequences.
    ``seed`` fixes the initial weights, the training batches and the held-out sequences.

    Returns a JSON-ready dict with the corpus, reference losses (Markov entropy rate, and
    ``log V`` = no memory of the motif) and one :class:`ProbeResult` per backbone.
    """
    corpus = corpus or ProbeCorpus(gap=gap)
    local, recall = corpus.masks()
    held_out = corpus.sample(eval_batch, torch.Generator().manual_seed(seed + 10_000))
    results = []
    for backbone in tqdm(backbones, desc="probe", disable=not progress):
        torch.manual_seed(seed)
        model = MusicLM(probe_preset(corpus, backbone, scale)).to(resolve_device(device))
        final = train_tokens(
            model, corpus=corpus, steps=steps, batch_size=batch_size, lr=lr, seed=seed
        )
        losses = position_losses(model, held_out).cpu()
        results.append(
            ProbeResult(
                backbone=backbone,
                n_parameters=count_parameters(model),
                steps=steps,
                loss_local=float(losses[:, local].mean()),
                loss_recall=float(losses[:, recall].mean()),
                final_train_loss=final,
                loss=float(losses[:, local | recall].mean()),
            )
        )
    return {
        "corpus": asdict(corpus),
        "reference": {
            "local_entropy_rate": corpus.conditional_entropy(),
            "recall_without_memory": math.log(corpus.vocab_size),
        },
        "results": [asdict(r) for r in results],
    }


PROBE_COLUMNS = [
    ("backbone", "backbone"), ("n_parameters", "params", "{:,}"), ("steps", "steps"),
    ("loss_local", "local loss", "{:.3f}"), ("loss_recall", "recall loss", "{:.3f}"),
    ("final_train_loss", "last train loss", "{:.3f}"),
]  # fmt: skip


def probe_setup(corpus: dict) -> str:
    """``"gap G, vocab V, motif M"``: the probe corpus, as the tables' headings name it."""
    return f"gap {corpus['gap']}, vocab {corpus['vocab_size']}, motif {corpus['motif_len']}"


def probe_floors(reference: dict) -> str:
    """The losses (nats) a perfect model reaches: the local entropy rate, and 0 for recall
    (``log V`` without memory of the motif); ``nan`` where the report lacks them."""
    local = reference.get("local_entropy_rate", math.nan)
    no_memory = reference.get("recall_without_memory", math.nan)
    return f"local {local:.3f}, recall 0 (no memory: {no_memory:.3f})"


def probe_markdown(report: dict) -> str:
    """The probe report as a Markdown table (losses in nats)."""
    return (
        f"Probe: {probe_setup(report['corpus'])}. Floors: {probe_floors(report['reference'])}.\n\n"
        + markdown_table(report["results"], PROBE_COLUMNS, align="lrrrrr")
    )


def save_probe(report: dict, path: str | Path) -> Path:
    """Write the report as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path
