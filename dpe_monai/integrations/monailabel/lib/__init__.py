"""Library of the DPE MONAI Label app (MONAI Label convention: ``lib/infers``)."""
