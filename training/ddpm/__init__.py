"""DDPM denoiser for noisy queries: U-Net noise predictor, T=1000 schedule, DDPM/DDIM started at the query's noise level."""
from .diffusion import CheckpointError, Diffusion, build_diffusion, load_checkpoint, save_checkpoint
from .schedule import NoiseSchedule
from .unet import UNet

__all__ = ["CheckpointError", "Diffusion", "build_diffusion", "load_checkpoint", "save_checkpoint", "NoiseSchedule", "UNet"]
