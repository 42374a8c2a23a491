"""Denoising engine: model, normalization, tiling, star mask, weights; no Qt, no napari."""
