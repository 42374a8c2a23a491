"""The denoising engine, one module per stage (see docs/architecture.md); no Qt, no napari."""
