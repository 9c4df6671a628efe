"""Shared pytest settings: small thread count so the 2-core CI machine stays responsive."""

import os

import torch

torch.set_num_threads(2)
# "auto" precision measures bf16 afresh in tests (many monkeypatch the measurement) and never writes the user's store
os.environ["DPE_MONAI_PRECISION_CACHE"] = ""
