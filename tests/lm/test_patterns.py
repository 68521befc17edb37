"""Codebook patterns: exact inverses, layouts, and clear errors."""

import pytest
import torch

from mambakit.lm.patterns import PATTERNS, get_pattern


@pytest.mark.parametrize("name", PATTERNS)
@pytest.mark.parametrize("K", [1, 2, 4, 9])
def test_revert_inverts_build(name: str, K: int) -> None:
    card, T = 16, 7
    codes = torch.randint(0, card, (3, K, T), generator=torch.Generator().manual_seed(K))
    pattern = get_pattern(name, K, card)
    tokens = pattern.build(codes)
    assert tokens.shape == (3, pattern.n_streams, pattern.seq_len(T))
    assert pattern.n_frames(tokens.shape[-1]) == T
    assert torch.equal(pattern.revert(tokens), codes)


def test_delay_layout_shifts_codebook_k_by_k_steps_and_pads_triangles() -> None:
    K, card, T = 3, 10, 4
    codes = torch.arange(K * T).view(1, K, T) % card
    tokens = get_pattern("delay", K, card).build(codes)
    for k in range(K):
        assert torch.equal(tokens[0, k, k : k + T], codes[0, k])
        # everything outside the diagonal band is PAD == codebook_size
        outside = torch.cat([tokens[0, k, :k], tokens[0, k, k + T :]])
        assert (outside == card).all()


def test_flat_layout_offsets_ids_by_codebook() -> None:
    K, card = 3, 5
    codes = torch.tensor([[[1, 2], [3, 4], [0, 1]]])  # [1, K=3, T=2]
    pattern = get_pattern("flat", K, card)
    tokens = pattern.build(codes)
    assert tokens.tolist() == [[[1, 5 + 3, 10 + 0, 2, 5 + 4, 10 + 1]]]
    for step in range(tokens.shape[-1]):
        lo, hi = pattern.allowed_ids(step)
        assert lo <= int(tokens[0, 0, step]) < hi


def test_known_mask_marks_prompt_and_delay_triangles() -> None:
    K, T = 3, 5
    known = torch.zeros(1, K, T, dtype=torch.bool)
    known[:, :, :2] = True
    mask = get_pattern("delay", K, 8).build_known(known)
    tokens_pad = get_pattern("delay", K, 8).build(torch.zeros(1, K, T, dtype=torch.long)) == 8
    # triangles (PAD) are known; of the codes exactly the prompt frames are known
    assert (mask[tokens_pad]).all()
    assert int(mask[~tokens_pad].sum()) == 2 * K


def test_errors_name_the_problem() -> None:
    pattern = get_pattern("delay", 2, 8)
    with pytest.raises(ValueError, match="codebooks"):
        pattern.build(torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        pattern.build(torch.full((1, 2, 4), 8))
    tokens = pattern.build(torch.zeros(1, 2, 4, dtype=torch.long))
    tokens[0, 1, 2] = 8  # PAD where a code must be
    with pytest.raises(ValueError, match="out of range"):
        pattern.revert(tokens)
    with pytest.raises(ValueError, match="unknown codebook pattern"):
        get_pattern("zigzag", 2, 8)
