"""Training the query denoisers (``train ddpm``, the sigma estimator) and the ``denoise`` / ``bench denoise`` commands.

The networks and samplers they train and run live in :mod:`lookalike.retrieval.denoise`.
"""
