"""lookalike.ui"""
