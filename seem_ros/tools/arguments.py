"""Argument types and groups the seem-ros commands share."""
import argparse
from typing import Tuple

from seem_ros.node.parameters import parse_canvas

OVERWRITE_HELP = ("write into a folder that holds other files (none of them is deleted or replaced); an earlier "
                  "seem_ros run's outputs there are replaced without it")


class UsageError(ValueError):
    """A bad argument found after parsing: exit code 2, like argparse's own."""


def canvas(text: str) -> Tuple[int, int]:
    try:
        parsed = parse_canvas(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not parsed:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 512x704, got {text!r}")
    return parsed


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="seem_focalt_v1.pt",
                        help="checkpoint path, or a released file name fetched from the hub (default %(default)s)")
    parser.add_argument("--config", default="focalt_v1", help="model variant or official YAML (default %(default)s)")
