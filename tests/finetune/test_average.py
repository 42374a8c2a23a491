"""The fine-tune's moving average of the trained weights: one update."""

from __future__ import annotations

import copy

import torch

from napari_astrodenoise.finetune import loop


def test_the_average_moves_towards_the_trained_weights_by_one_minus_the_decay():
    trained = torch.nn.Conv2d(2, 3, 3)
    average = copy.deepcopy(trained).requires_grad_(False)
    before = [p.detach().clone() for p in average.parameters()]
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    loop._average_into(torch, average, trained, 0.9)
    for a, b, p in zip(average.parameters(), before, trained.parameters(), strict=True):
        torch.testing.assert_close(a, 0.9 * b + 0.1 * p)
        assert not a.requires_grad
