"""A MONAI Label app that serves DPE enhancement (``main.py``) and an enhance-then-segment pipeline.

This folder is a MONAI Label app directory: start it with ``monailabel start_server --app <this folder> ...``
(see ``README.md`` here). Importing this package does not import ``monailabel``; ``lib.infers`` does.
"""
