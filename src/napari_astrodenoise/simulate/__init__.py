"""Data synthesis: simulated deep-sky scenes (:mod:`.sky`) and detector noise (:mod:`.noise`).

Kept apart from the engine (as photutils keeps ``datasets`` apart from its algorithms): the
engine never imports it; the sample data, training and benchmarks do.
"""
