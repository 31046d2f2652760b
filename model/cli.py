"""`irisop train`: fit the Iris classifier and write (and optionally upload) an artifact."""
from __future__ import annotations

import argparse
from pathlib import Path

from irisop_serving.contract import DEFAULT_FORMAT, MODEL_FILES


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="artifact directory to write (created if missing)")
    # Validated in run() rather than with argparse choices so a bad value is
    # reported like every other error: one line, exit 1.
    parser.add_argument(
        "--format", default=DEFAULT_FORMAT, help=f"model file format: {' or '.join(MODEL_FILES)} (default {DEFAULT_FORMAT})"
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed for split, CV folds and solver (default 42)")
    parser.add_argument("--upload", metavar="S3_URI", help="also upload the artifact to s3://bucket/prefix/")


def run(args: argparse.Namespace) -> int:
    from irisop_serving.contract import CommandError

    from .artifact import ArtifactWriteError, write_artifact
    from .serialize import FormatError, check_format
    from .training import TrainParams, train
    from .upload import UploadError, parse_s3_uri, spec_model_block, upload_artifact

    try:
        fmt = check_format(args.format)
        # Parse the URI before training so a typo fails in milliseconds.
        location = parse_s3_uri(args.upload) if args.upload else None
    except (FormatError, UploadError) as exc:
        raise CommandError(str(exc)) from exc

    result = train(TrainParams(seed=args.seed))
    try:
        meta = write_artifact(args.out, result, fmt)
    except ArtifactWriteError as exc:
        raise CommandError(str(exc)) from exc
    metrics = meta["metrics"]
    print(
        f"wrote {args.out}/{meta['model_file']} sha256={meta['sha256']} "
        f"holdout_accuracy={metrics['holdout_accuracy']:.3f} cv_mean={metrics['cv_mean']:.3f}"
    )
    if location is None:
        return 0
    files = [p.name for p in args.out.iterdir() if p.is_file() and not p.name.startswith(".")]
    try:
        keys = upload_artifact(args.out, files, location)
    except UploadError as exc:
        raise CommandError(str(exc)) from exc
    print(f"uploaded {len(keys)} files to {location.uri}")
    print("# paste into your IrisModel:")
    print(spec_model_block(location, meta["sha256"], fmt), end="")
    return 0
