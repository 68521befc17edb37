"""Self-describing checkpoints: safetensors weights + a JSON config beside them.

Every model family has a frozen dataclass config and mixes in
:class:`PretrainedMixin`, which gives ``model.save_pretrained(dir)`` and
``Model.from_pretrained(dir_or_hub_id)``. ``config.json`` records the model
type, the package version and any extra metadata (sample rate, codec id, ...),
so loading a checkpoint of another family fails with a message that says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from mambakit import __version__
from mambakit.utils import read_document

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
# Models we train ourselves and ship inside the package, one folder each
# (``config.json``, ``model.safetensors``, ``MODEL_CARD.md``, extras such as defaults),
# addressed by their short name, e.g. ``DrumSynth.from_pretrained("gm-drums")``.
PACKAGED_DIR = Path(__file__).parent / "weights"

T = TypeVar("T", bound="PretrainedMixin")
C = TypeVar("C")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, or belongs to another model family."""


def config_to_dict(config: Any) -> dict[str, Any]:
    """A (possibly nested) dataclass config as plain JSON-ready data."""
    return dataclasses.asdict(config)


def _admits_tuple(hint: Any) -> bool:
    """A field annotated as a tuple, or as a union with one (e.g. ``int | tuple[int, ...]``)."""
    if hint is tuple or typing.get_origin(hint) is tuple:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_admits_tuple(arg) for arg in typing.get_args(hint))
    return False


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclass fields.

    Unknown keys are an error (a config from a newer version should not load
    silently); missing keys take the field defaults, or, where ``cls`` has a
    ``SAVED_BEFORE`` mapping, the value a field had before it existed (a checkpoint saved
    then was trained without it). Lists become tuples where the field is annotated as a
    tuple (alone or in a union), so frozen configs stay hashable.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise CheckpointError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
    data = {**getattr(cls, "SAVED_BEFORE", {}), **data}
    kwargs = {}
    for name, value in data.items():
        hint = hints.get(name)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value)
        elif _admits_tuple(hint) and isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = value
    return cls(**kwargs)


def packaged_models() -> list[str]:
    """Short names of the models shipped inside the package (folders of ``PACKAGED_DIR``)."""
    if not PACKAGED_DIR.is_dir():
        return []
    return sorted(p.name for p in PACKAGED_DIR.iterdir() if (p / CONFIG_NAME).is_file())


def resolve_pretrained_path(path_or_id: str | os.PathLike[str]) -> Path:
    """A local directory as is; else the short name of a packaged model (``"gm-drums"``);
    otherwise a Hugging Face hub id, fetched with huggingface_hub."""
    path = Path(path_or_id)
    if path.exists():
        return path
    text = str(path_or_id)
    if text in packaged_models():
        return PACKAGED_DIR / text
    if text.count("/") == 1 and not text.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise CheckpointError(
                f"{text!r} is not a local directory, and loading a hub id needs huggingface_hub "
                "(pip install huggingface_hub)"
            ) from e
        return Path(snapshot_download(text))
    shipped = ", ".join(packaged_models()) or "none"
    raise CheckpointError(f"no checkpoint directory at {text!r} (packaged models: {shipped})")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for an ``nn.Module`` built as ``Model(config)``.

    Subclasses set ``config_class`` (a frozen dataclass) and ``model_type`` (a
    short family name, e.g. ``"drums"``) and keep their config in ``self.config``.
    """

    config_class: ClassVar[type]
    model_type: ClassVar[str]
    config: Any

    def checkpoint_metadata(self) -> dict[str, Any]:
        """Extra JSON metadata saved beside the config (override to add sample rate, ...)."""
        return {}

    def save_pretrained(self, directory: str | os.PathLike[str], extra: dict | None = None) -> Path:
        from safetensors.torch import save

        assert isinstance(self, torch.nn.Module)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        meta = {
            "model_type": self.model_type,
            "mambakit_version": __version__,
            "config": config_to_dict(self.config),
            **self.checkpoint_metadata(),
            **(extra or {}),
        }
        atomic_write_bytes(directory / WEIGHTS_NAME, save(state))
        atomic_write_bytes(directory / CONFIG_NAME, json.dumps(meta, indent=2).encode())
        return directory

    @classmethod
    def read_checkpoint_config(cls, directory: str | os.PathLike[str]) -> dict[str, Any]:
        directory = resolve_pretrained_path(directory)
        meta = read_document(
            directory / CONFIG_NAME,
            f"{directory}: no {CONFIG_NAME} (not a mambakit checkpoint)",
            error_types=(CheckpointError, CheckpointError),
        )
        found = meta.get("model_type")
        if found != cls.model_type:
            raise CheckpointError(
                f"{directory}: checkpoint is a {found!r} model, expected {cls.model_type!r}"
            )
        return meta

    @classmethod
    def from_pretrained(
        cls: type[T], directory: str | os.PathLike[str], device: str | torch.device | None = None
    ) -> T:
        from safetensors.torch import load_file

        directory = resolve_pretrained_path(directory)
        meta = cls.read_checkpoint_config(directory)
        config = config_from_dict(cls.config_class, meta["config"])
        model = cls(config)  # type: ignore[call-arg]
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{directory}: no {WEIGHTS_NAME}")
        try:
            state = load_file(str(weights))
        except Exception as e:  # safetensors raises its own error types for a cut file
            raise CheckpointError(f"{weights}: unreadable weights ({e})") from e
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)  # type: ignore[attr-defined]
        except RuntimeError as e:  # a tensor of another shape than the config builds
            raise CheckpointError(f"{directory}: weights do not match the config ({e})") from e
        if missing or unexpected:
            raise CheckpointError(
                f"{directory}: weights do not match the config "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        model.eval()  # type: ignore[attr-defined]
        if device is not None:
            model.to(device)  # type: ignore[attr-defined]
        return model
