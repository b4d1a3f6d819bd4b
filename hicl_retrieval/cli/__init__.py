"""The ``hicl-retrieval`` command: parses arguments and calls the library, nothing more.

Errors the user can fix (`HiclError`) are printed as one line on stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..core.errors import HiclError
from . import index_commands, learning_commands, options, search_commands, serve_command
from .options import Parser


def parser() -> argparse.ArgumentParser:
    main = Parser(prog="hicl-retrieval", description=__doc__.splitlines()[0])
    main.add_argument("-v", "--verbose", action="store_true", help="log progress events")
    commands = main.add_subparsers(dest="command", required=True)
    for group in (index_commands, search_commands, learning_commands, serve_command):
        group.register(commands)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no bar for loading weights
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        options.check_index_names(args)
        args.run(args)
    except HiclError as exc:
        print(f"hicl-retrieval: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return 1
    except OSError as exc:  # the disk or the system refused: a full disk, a permission, a vanished file
        where = f": {exc.filename}" if exc.filename else ""
        print(f"hicl-retrieval: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hicl-retrieval: interrupted", file=sys.stderr)
        return 130
    return 0
