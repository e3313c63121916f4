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
    "edgepose.cli.agree_cmd",
    "edgepose.cli.eval_cmd",
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
            if exc.name == module_name:
                continue
            _unavailable(sub, module_name, exc)
            continue
        module.register(sub)
    return parser


# A package that is not installed -> the extra that brings it (a core install has torch and numpy only).
# These are pip extras and import names; some are spelled like a format, and are not one.
EXTRAS = {
    "device": ("cv2", "onnxruntime"),  # pip names, not formats
    "export": ("onnx", "onnxslim", "skimage"),  # pip names, not formats
    "tflite": ("litert_torch", "ai_edge_quantizer", "ai_edge_litert"),  # pip names, not formats
    "bench": ("matplotlib",),
    "weights": ("gdown",),
    "accuracy": ("pycocotools",),
}
EXTRA_OF = {package: extra for extra, packages in EXTRAS.items() for package in packages}
# Commands whose every use needs more than the core; a missing OpenCV there means this extra.
COMMAND_EXTRAS = {"export": "export", "infer": "device", "bench": "device"}


def needs_extra(exc: ModuleNotFoundError, command: str | None) -> str | None:
    """The one line saying which extra brings the package ``exc`` names, or None if it is not ours to name."""
    top = (exc.name or "").split(".")[0]
    if top not in EXTRA_OF:
        return None
    extra = COMMAND_EXTRAS.get(command or "", EXTRA_OF[top]) if top == "cv2" else EXTRA_OF[top]
    what = f"`edgepose {command}`" if command else "this command"
    return f"{what} needs {top}, which is not installed: pip install 'edgepose[{extra}]'"


def _unavailable(sub, module_name: str, exc: ModuleNotFoundError) -> None:
    """Register a sub-command whose module cannot be imported here, so that using it says what to install."""
    command = module_name.rsplit(".", 1)[-1].removesuffix("_cmd")
    message = needs_extra(exc, command)
    if message is None:
        raise exc
    p = sub.add_parser(command, help=f"(not installed: {message.split(': ', 1)[1]})", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)

    def fail(args: argparse.Namespace) -> int:
        raise EdgeposeError(message)

    p.set_defaults(func=fail)


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
    except ModuleNotFoundError as exc:  # an optional package: say which extra brings it
        message = needs_extra(exc, getattr(args, "command", None))
        if message is None:
            raise
        print(f"edgepose: error: {message}", file=sys.stderr)
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
