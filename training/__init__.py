"""Training pipeline for the napari-astrodenoise ResUNet (not packaged; imports the core only).

Modules: ``data`` (tiles in network space), ``losses`` (the loss terms), ``train`` (the loop,
``python -m training.train --config ...``) and ``export`` (trained checkpoint -> shipped
safetensors + JSON). See ``training/README.md``.
"""
