"""Token store: tokenize a folder, resume skips done files, bad files are reported."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from mambakit.lm.store import TokenDataset, TokenStore, tokenize_folder


def _write_folder(folder, n: int = 3) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        # different lengths, rates and channel counts
        sr = 8000 if i % 2 == 0 else 16000
        audio = rng.standard_normal((sr // 4 * (i + 1), 1 + i % 2)).astype(np.float32) * 0.1
        sf.write(folder / f"song_{i}.wav", audio, sr)


def test_tokenize_resume_and_bad_file(tiny_dac, tmp_path) -> None:
    music, store_dir = tmp_path / "music", tmp_path / "tokens"
    (music / "sub").mkdir(parents=True)
    _write_folder(music)
    (music / "sub" / "broken.wav").write_bytes(b"RIFF not really a wav file")
    manifest = tokenize_folder(music, tiny_dac, store_dir, shard_frames=600, progress=False)
    assert sorted(f["path"] for f in manifest["files"]) == [f"song_{i}.wav" for i in range(3)]
    assert [s["path"] for s in manifest["skipped"]] == ["sub/broken.wav"]
    assert "broken.wav" in manifest["skipped"][0]["error"]
    assert len({f["shard"] for f in manifest["files"]}) >= 2  # sharded

    # stored codes are exactly the codec's codes of the (resampled) file
    store = TokenStore(store_dir)
    entry = next(f for f in store.files() if f["path"] == "song_0.wav")
    audio = torch.from_numpy(sf.read(music / "song_0.wav", dtype="float32")[0]).reshape(1, 1, -1)
    assert torch.equal(store.codes(entry), tiny_dac.encode(audio)[0])

    # a new file appears; a re-run encodes only that one
    calls = []
    original = tiny_dac.encode
    tiny_dac.encode = lambda audio: calls.append(audio.shape) or original(audio)
    try:
        sf.write(music / "new.wav", np.zeros((2000, 1), np.float32) + 0.01, 8000)
        again = tokenize_folder(music, tiny_dac, store_dir, shard_frames=600, progress=False)
    finally:
        tiny_dac.encode = original
    assert len(calls) == 1
    assert len(again["files"]) == 4
    assert json.loads((store_dir / "manifest.json").read_text())["files"] == again["files"]


def test_dataset_crops_are_seeded_and_in_bounds(tiny_dac, tmp_path) -> None:
    music = tmp_path / "music"
    music.mkdir()
    _write_folder(music, n=4)
    tokenize_folder(music, tiny_dac, tmp_path / "tokens", val_fraction=0.0, progress=False)
    data = TokenDataset(tmp_path / "tokens", "train", seq_len=50)
    torch.manual_seed(1)
    a = data[0]
    torch.manual_seed(1)
    assert torch.equal(a, data[0]) and a.shape == (3, 50)
    with pytest.raises(ValueError, match="seq-len"):
        TokenDataset(tmp_path / "tokens", "train", seq_len=10**6)
    with pytest.raises(ValueError, match="codec"):
        fields = ("sample_rate", "frame_rate", "n_codebooks", "codebook_size")
        other = SimpleNamespace(id="other", **{k: getattr(tiny_dac, k) for k in fields})
        tokenize_folder(music, other, tmp_path / "tokens", progress=False)
