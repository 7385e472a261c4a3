"""Metric-learning losses: contrastive (pairs), triplet (mined triplets), NT-Xent / SupCon (views)."""
from .contrastive import ContrastiveLoss
from .ntxent import NTXentLoss, SupConLoss, supcon_loss
from .triplet import TripletMarginLoss

__all__ = ["ContrastiveLoss", "TripletMarginLoss", "NTXentLoss", "SupConLoss", "supcon_loss"]
