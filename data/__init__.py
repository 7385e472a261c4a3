"""lookalike.data"""
