"""The ``dpe-monai`` command: ``enhance`` files and folders, ``data build``, ``demo``.

``dpe-monai enhance INPUT... --output DIR`` enhances NIfTI, DICOM (single files, multi-frame files and multi-file
series) and PNG/JPEG/BMP/TIFF images with the DPE bundle and writes each result in its input's format, bit depth
and layout, mirroring the input's relative path under ``DIR``. One bad file never stops the batch: each failure
is printed as one line on stderr (file and problem) and counted in the summary table.

Exit codes: 0 when every input was enhanced (or skipped because its output exists), 2 when some failed,
1 on usage errors (bad options, missing or unreadable model, an output path that would replace an input) and when
there is nothing to do (no image file among the inputs: empty folders, folders of other files). Everything that
can be checked without the model (options, inputs, collisions, the weights file) is checked before it loads. See
``docs/ENHANCE_CLI.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dpe_monai.contract import WINDOW_MODES

__all__ = ["main", "default_bundle", "build_parser"]

EXIT_OK, EXIT_USAGE, EXIT_FAILED = 0, 1, 2
DEFAULT_MAX_PIXELS = 256 * 2**20  # spatial elements per image (a 2-D image or a whole volume)


class UsageError(Exception):
    """A problem with the command line or its setup: reported on one line, exit code 1."""


class _Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors exit with code 1 (usage error), not argparse's 2 (reserved for failures)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def default_bundle() -> Path:
    """The bundle used without ``--bundle``: ``$DPE_MONAI_BUNDLE``, else the installed or checked-out bundle."""
    from dpe_monai.locate import bundle_dir

    return bundle_dir()


def _positive_int(text: str) -> int:
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _overlap(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"overlap must be in [0, 1), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``dpe-monai`` (subcommands ``enhance``, ``data build``, ``demo``)."""
    parser = _Parser(prog="dpe-monai", description="Deep Perceptual Enhancement for medical images (MONAI).")
    from dpe_monai import __version__

    parser.add_argument("--version", action="version", version=f"dpe-monai {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    enh = sub.add_parser(
        "enhance",
        help="enhance image files and folders, writing each result in its input's format",
        description="Enhance NIfTI, DICOM, PNG/JPEG/BMP and TIFF files (folders are searched recursively). "
        "Outputs mirror each input's relative path under --output, named <stem><postfix><ext>. "
        "Exit codes: 0 all succeeded, 2 some failed, 1 usage error.",
    )
    enh.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (recursive)")
    enh.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (created if needed)")
    enh.add_argument(
        "--bundle", type=Path, default=None, help="MONAI bundle folder (default: $DPE_MONAI_BUNDLE or the repo's)"
    )
    enh.add_argument("--weights", type=Path, default=None, help="weights file (default: <bundle>/models/model.pt)")
    enh.add_argument(
        "--network-config",
        default="inference.json",
        metavar="CONFIG",
        help="bundle config whose network_def the weights belong to: a file in <bundle>/configs or a path "
        "(default inference.json; task_driven.json for a task-driven fine-tune)",
    )
    enh.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    enh.add_argument("--axis", type=int, choices=(0, 1, 2), default=2, help="slicing axis of 3-D volumes (default 2)")
    enh.add_argument(
        "--window",
        choices=WINDOW_MODES,
        default="auto",
        help="how values map to the network's [0, 1] (dpe_monai.contract): auto (default: 0..255 for 8-bit, else "
        "the 0.5-99.5%% percentiles over the body), dicom (the file's window), "
        "percentile, minmax, container (the format's full range, brightness absolute: a 12-bit scan stored in 16 "
        "bits reads as very dark and is stretched over the whole range; meant for 16-bit photographs). The model "
        "brightens what sits low in its window: minmax and container put a well-exposed CT's tissue low, and it "
        "comes back over a hundred HU brighter",
    )
    enh.add_argument("--tile-size", type=_positive_int, default=1024, help="sliding-window tile side (default 1024)")
    enh.add_argument("--overlap", type=_overlap, default=0.25, help="tile overlap fraction (default 0.25)")
    enh.add_argument(
        "--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto", help="default: auto (bf16 if safe)"
    )
    enh.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images (or volumes) with more pixels than this (default {DEFAULT_MAX_PIXELS})",
    )
    enh.add_argument("--postfix", default="_dpe", help="added to each output's file stem (default _dpe)")
    enh.add_argument("--dry-run", action="store_true", help="list what would be written; load no model, write nothing")
    enh.add_argument("--overwrite", action="store_true", help="replace existing outputs (never inputs)")
    enh.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary; failures still print")

    data = sub.add_parser("data", help="data commands (data build: build the packaged training collection)")
    data.add_argument("data_command", choices=("build",), metavar="build")
    sub.add_parser("demo", help="run the end-to-end demo")
    return parser


def _delegate(module: str, argv: list[str]) -> int:
    """Run ``<module>.main(argv)`` (imported lazily) and turn its result into an exit code."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            print(f"dpe-monai: error: {module} is not available in this installation", file=sys.stderr)
            return EXIT_USAGE
        raise
    result = mod.main(argv)
    return int(result) if isinstance(result, int) else EXIT_OK


def _planned_collisions(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """``(output, input)`` pairs where a planned output path is an input file that must be refused up front.

    An output equal to its own input is always refused; one equal to another input only with ``--overwrite``
    (without it, that output exists and is skipped).
    """
    from dpe_monai.inference.files import discover_inputs
    from dpe_monai.io import output_paths

    jobs, _ = discover_inputs(args.inputs, args.output)
    inputs = {p.resolve(): p for job in jobs for p in job.paths}
    found = []
    for job in jobs:
        own = {p.resolve() for p in job.paths}
        for out in output_paths(job, args.output, args.postfix):
            key = out.resolve()
            if key in own or (args.overwrite and key in inputs):
                found.append((out, inputs[key]))
    return found


def _check_weights(weights: Path) -> None:
    """Raise :class:`UsageError` unless ``weights`` is a readable generator checkpoint (before any model is built)."""
    from dpe_monai.inference.enhancer import load_weights

    if not Path(weights).is_file():
        raise UsageError(f"{weights}: model weights not found; train the bundle or pass --bundle/--weights")
    try:
        state = load_weights(weights)
    except Exception as e:  # noqa: BLE001 - any unpickling/zip/format error means the same thing to the user
        why = " ".join(str(e).split())[:200]
        raise UsageError(f"{weights}: not a model checkpoint ({type(e).__name__}: {why})") from None
    if not state or not all(hasattr(v, "shape") for v in state.values()):
        raise UsageError(f"{weights}: not a model checkpoint (no tensors in it)")


def _load_enhancer(args: argparse.Namespace):
    """Build the :class:`~dpe_monai.inference.Enhancer` from the bundle, or raise :class:`UsageError`."""
    import torch

    from dpe_monai.inference import Enhancer
    from dpe_monai.inference.enhancer import bundle_config

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine (use --device cpu)")
    bundle = args.bundle or default_bundle()
    config = bundle_config(bundle, args.network_config)
    weights = args.weights or bundle / "models" / "model.pt"
    if not (bundle / "configs" / "inference.json").is_file():
        raise UsageError(
            f"{bundle}: not a DPE bundle (no configs/inference.json); pass --bundle or set DPE_MONAI_BUNDLE"
        )
    if not config.is_file():
        raise UsageError(f"{args.network_config}: no such bundle config (looked in {bundle / 'configs'})")
    _check_weights(weights)
    try:
        return Enhancer.from_bundle(
            bundle,
            weights=weights,
            config=config,
            device=args.device,
            precision=args.precision,
            tile_size=args.tile_size,
            overlap=args.overlap,
            axis=args.axis,
        )
    except (ValueError, RuntimeError, KeyError) as e:
        text = " ".join(str(e).split())
        if isinstance(e, ValueError) and "does not fit the network" in text:  # load_network's own line, with a hint
            raise UsageError(text) from e
        raise UsageError(
            f"{weights}: cannot load these weights into the bundle's network ({type(e).__name__}: {text[:300]})"
        ) from e


def _print_line(text: str, progress: bool) -> None:
    """Print one line on stderr without breaking a live progress bar."""
    text = " ".join(str(text).split())
    if progress:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)


def _check_inputs(args: argparse.Namespace) -> None:
    """Raise :class:`UsageError` when there is nothing to do: no input path exists, or none holds an image file."""
    from dpe_monai.inference.files import discover_inputs

    missing = [p for p in args.inputs if not Path(p).exists()]
    if len(missing) == len(args.inputs):
        raise UsageError(f"no such file or folder: {', '.join(map(str, missing))}")
    output = Path(args.output).resolve()
    if any(Path(p).is_dir() and Path(p).resolve() == output for p in args.inputs):
        raise UsageError(f"--output {args.output}: is an input folder; choose another folder (a new subfolder works)")
    jobs, problems = discover_inputs(args.inputs, args.output, args.postfix)
    if not jobs:
        why = f" ({problems[0][0]}: {problems[0][1]})" if problems else ""
        raise UsageError(f"nothing to do: no supported image files in {' '.join(map(str, args.inputs))}{why}")


def _check_writable(output: Path) -> None:
    """One line before any image is enhanced when ``output`` cannot take the results (not one line per image, naming
    a hidden temporary file): a folder is created and removed again where ``output`` (or its nearest existing
    parent) is, so nothing is left behind."""
    import os
    import tempfile

    existing = output.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--output {output}: cannot write there ({existing} is a file)")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".dpe-monai-write-test-"))
    except OSError as e:
        raise UsageError(f"--output {output}: cannot write there ({e.strerror or type(e).__name__})") from None


def run_enhance(args: argparse.Namespace) -> int:
    """The ``enhance`` subcommand; returns the exit code."""
    import pydicom

    from dpe_monai.inference import enhance_files

    # pydicom warns of each odd header value (e.g. an IS of "1A") without naming the file; the summary names each
    # file that cannot be enhanced, and a value the reader needs is checked where it is read
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output}: exists and is not a folder")
    if any(sep in args.postfix for sep in ("/", "\\")) or args.postfix in (".", ".."):
        raise UsageError(f"--postfix {args.postfix!r}: must not contain a path separator")
    collisions = _planned_collisions(args)
    if collisions:
        out, src = collisions[0]
        more = f" (and {len(collisions) - 1} more)" if len(collisions) > 1 else ""
        raise UsageError(
            f"{out}: output path is the input file {src}{more}; refusing to overwrite inputs "
            "(choose another --output or --postfix)"
        )
    _check_inputs(args)
    if not args.dry_run:
        _check_writable(output)
        bundle = args.bundle or default_bundle()
        if not (bundle / "configs" / "inference.json").is_file():
            raise UsageError(
                f"{bundle}: not a DPE bundle (no configs/inference.json); pass --bundle or set DPE_MONAI_BUNDLE"
            )
        _check_weights(args.weights or bundle / "models" / "model.pt")
    enhancer = None if args.dry_run else _load_enhancer(args)
    if enhancer is not None and not args.quiet:
        print(f"model: {args.bundle or default_bundle()} on {enhancer.device} ({enhancer.precision})", flush=True)
    progress = not args.quiet and not args.dry_run and sys.stderr.isatty()
    summary = enhance_files(
        args.inputs,
        output,
        enhancer,
        postfix=args.postfix,
        overwrite=args.overwrite,
        dry_run=args.dry_run,
        max_pixels=args.max_pixels,
        progress=progress,
        on_error=lambda _name, message: _print_line(f"error: {message}", progress),
        window=args.window,
    )
    if not args.quiet:
        for _name, message in summary.skipped:
            _print_line(f"skipped: {message}", False)
        if args.dry_run:
            for name, outs in summary.done:
                print(f"would write {', '.join(outs)}  (from {name})")
        print(summary.table(args.dry_run) + ("\n(dry run: nothing was enhanced or written)" if args.dry_run else ""))
    return summary.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dpe-monai`` console script; returns the exit code (0, 1 or 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        return _delegate("dpe_monai.demo", argv[1:])
    if argv[:2] == ["data", "build"]:
        return _delegate("dpe_monai.data.build", argv[2:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help/--version exit 0; parse errors exit 1 (see _Parser.error)
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_USAGE
    try:
        return run_enhance(args)
    except UsageError as e:
        print(f"dpe-monai: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dpe-monai: interrupted; finished outputs are complete, no partial files were left", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
