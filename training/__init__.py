"""lookalike.training"""
