"""lookalike.indexer"""
