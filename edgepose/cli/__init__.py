"""The ``edgepose`` command line: one module per sub-command, each with ``register(subparsers)``.

A sub-command module adds its parser and sets ``func(args) -> int``. Errors the user can fix
(:class:`EdgeposeError`) print as one line on stderr with exit code 2 (a message that lists several
problems: one line each); so does every ``OSError`` (no space, read-only, permission denied: the path and
the cause). Ctrl-C prints one line and exits 130. Nothing else is caught, so a real bug still shows its
traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import signal
import sys

from edgepose import __version__
from edgepose.device.errors import os_error_message
from edgepose.errors import EdgeposeError

# Order = order in `edgepose --help`.
SUBCOMMANDS = (
    "edgepose.cli.models_cmd",
    "edgepose.cli.macs_cmd",
    "edgepose.cli.targets_cmd",
    "edgepose.cli.weights_cmd",
    "edgepose.cli.export_cmd",
    "edgepose.cli.infer_cmd",
    "edgepose.cli.bench_cmd",
    "edgepose.cli.report_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgepose",
        description="LitePose and Lite-HRNet on edge devices: models, MACs, export, inference, benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"edgepose {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except EdgeposeError as exc:
        error_lines(str(exc))
        return 2
    except BrokenPipeError:  # `edgepose models | head`: the reader left; stop quietly
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at interpreter exit
        return 0
    except OSError as exc:  # the disk, not edgepose: say which path and why
        error_lines(os_error_message(exc))
        return 2
    except KeyboardInterrupt:
        print("edgepose: interrupted", file=sys.stderr)
        return 130


def error_lines(message: str) -> None:
    """Print ``message`` on stderr, each of its lines as one ``edgepose: error:`` line."""
    for line in message.splitlines() or [""]:
        print(f"edgepose: error: {line}", file=sys.stderr)


def _terminated(signum: int, frame: object) -> None:
    print("edgepose: terminated", file=sys.stderr)
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: staging folders and child processes are removed


def run() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _terminated)
    code = main()
    # The interpreter's last garbage collection walks every object torch made: 2 s and more on a busy
    # machine, which would stretch "Ctrl-C ends an export at once". Freezing skips it (the OS frees all).
    gc.freeze()
    sys.exit(code)
