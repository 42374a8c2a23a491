"""Training pipeline for the napari-astrodenoise ResUNet (not packaged; imports the core only).

Modules: ``config`` (the TOML configuration), ``data`` (tiles in network space), ``losses``
(the loss terms), ``validation`` (validation tiles, metrics, previews), ``checkpoints`` (a
run's checkpoints), ``train`` (the loop, ``python -m training.train --config ...``) and
``export`` (trained checkpoint -> shipped safetensors + JSON). See ``training/README.md``.
"""
