"""MONAI Label app serving DPE enhancement (``dpe_enhance``) and an enhance-then-segment example.

Start it in a MONAI Label environment that also has ``dpe-monai`` installed (see README.md here)::

    monailabel start_server --app <this folder> --studies <images> \
        --conf dpe_bundle <dpe bundle> --conf segmentation_bundle <segmentation bundle>

Or run one inference in-process, without a server::

    python main.py --studies <images> --image <file> [--model dpe_enhance] [--conf key value ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import os

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask

import dpe_monai
from dpe_monai.integrations.monailabel.lib.infers import build_infers

logger = logging.getLogger(__name__)


class DPEApp(MONAILabelApp):
    """MONAI Label app whose infer tasks run the DPE bundle (see :func:`build_infers` for the ``--conf`` keys)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="dpe-monai",
            description="Deep Perceptual Enhancement (Sharif et al., JBHI 2022) and enhance-then-segment",
            version=dpe_monai.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers = build_infers(self.conf)
        logger.info(f"+++ DPE infer tasks: {sorted(infers)}")
        return infers


def main() -> None:
    """Run one inference in-process (no server) and print the result."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", required=True, help="datastore folder")
    parser.add_argument("--image", required=True, help="image id in the datastore, or a file path")
    parser.add_argument("--model", default="dpe_enhance")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    app = DPEApp(os.path.dirname(os.path.abspath(__file__)), args.studies, dict(args.conf))
    result = app.infer({"model": args.model, "image": args.image, "device": args.device})
    print(json.dumps({k: v for k, v in result.items() if k != "params"}, indent=1, default=str))


if __name__ == "__main__":
    main()
