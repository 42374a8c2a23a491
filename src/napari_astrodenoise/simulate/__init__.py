"""Data synthesis: simulated deep-sky scenes (:mod:`.sky`) and detector noise (:mod:`.noise`).

A scene is put together in `.sky` from the stars of `.stars` and the galaxies, nebulae and dust
of `.extended`, coloured by `.colour`; the noise mixture of `.noise` stacks the detector
artefacts of `.artifacts` on its Poisson-Gaussian and Gaussian models.

Kept apart from the engine (as photutils keeps ``datasets`` apart from its algorithms): the
engine never imports it; the sample data, training and benchmarks do.
"""
