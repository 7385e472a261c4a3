"""Metric-learning losses, all called ``loss(embeddings, labels, indices_tuple=None)`` (pytorch-metric-learning's
interface): contrastive (pairs), triplet (triplets), SupCon / NT-Xent (pairs). Miners choose the indices tuples."""
from .contrastive import ContrastiveLoss
from .supcon import NTXentLoss, SupConLoss
from .triplet import TripletMarginLoss
from .tuples import Pairs, Triplets, all_pairs, all_triplets, label_masks, pairwise_distances

__all__ = ["ContrastiveLoss", "TripletMarginLoss", "NTXentLoss", "SupConLoss", "Pairs", "Triplets", "all_pairs",
           "all_triplets", "label_masks", "pairwise_distances"]
