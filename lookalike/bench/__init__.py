"""lookalike.bench: real-photo benchmarks (edited copies, noisy photos) behind ``lookalike bench copies|noisy``."""
