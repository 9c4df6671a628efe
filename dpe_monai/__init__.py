"""dpe-monai: Deep Perceptual Enhancement (Sharif et al., IEEE JBHI 2022) for medical images, on MONAI."""

__version__ = "0.1.0"
