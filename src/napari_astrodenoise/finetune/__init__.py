"""Fine-tuning of a shipped model on a user's own sub-exposures (Noise2Noise), no Qt.

``finetune(frames, name=...)`` registers the frames by whole-pixel shifts, trains the base
model on pairs of them and writes the result to the user model directory;
``iter_finetune`` is the same as a generator of progress records (closing it cancels).
"""

from __future__ import annotations

from napari_astrodenoise.finetune.api import (
    PAIRS,
    FinetuneProgress,
    FinetuneResult,
    finetune,
    iter_finetune,
)

__all__ = ["PAIRS", "FinetuneProgress", "FinetuneResult", "finetune", "iter_finetune"]
