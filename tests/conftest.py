"""Shared pytest settings: small thread count so the 2-core CI machine stays responsive."""

import torch

torch.set_num_threads(2)
