"""lookalike.retrieval"""
