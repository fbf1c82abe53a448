"""`python -m bonfire_worker --entry module:factory`: the process a Rust trainer spawns."""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import threading
import time

from .version import PROTOCOL_VERSION, __version__

DEFAULT_ENTRY = "bonfire_worker.mlp_numpy:create"

log = logging.getLogger("bonfire_worker")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.blas_threads is not None and args.blas_threads < 1:
        parser.error(f"--blas-threads must be at least 1, got {args.blas_threads}")
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level, format="%(levelname)s %(name)s: %(message)s"
    )
    _limit_blas_threads(args.blas_threads)
    from .worker import (
        serve,  # imports NumPy: only now that its thread count is settled
    )

    # The protocol owns the real stdout. Everything else that writes to stdout -- a workload's
    # print(), a C extension writing to fd 1 -- lands on stderr instead, which the peer logs.
    sys.stdout.flush()
    protocol_out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", newline="\n")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Invalid UTF-8 from the peer must become a bad-request reply, not a crash.
    requests = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    _exit_with_parent()
    log.info(
        "bonfire-worker %s (protocol %d), pid %d, entry %s, OpenBLAS threads %s",
        __version__, PROTOCOL_VERSION, os.getpid(), args.entry, os.environ["OPENBLAS_NUM_THREADS"],
    )
    try:
        serve(args.entry, requests, protocol_out)
    except BrokenPipeError:
        log.warning("the peer closed the reply pipe, exiting")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        try:
            protocol_out.close()
        except BrokenPipeError:
            pass
    return 0


def _exit_with_parent() -> None:
    # Between requests, end-of-file on stdin tells the worker its peer has gone. During a long
    # request nothing reads stdin, so a watchdog notices instead when the parent process dies
    # (the worker is re-parented): no orphan keeps training.
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                log.warning("the peer (pid %d) has gone, exiting", parent)
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _limit_blas_threads(threads: int | None) -> None:
    # A window's matrices are small (32 × 784 by 784 × 128), so extra BLAS threads gain little,
    # and on a machine whose cores are busy (burn trainers, a browser) OpenBLAS's spinning
    # threads make a window 10-40× slower. One thread unless told otherwise.
    if threads is not None:
        os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    else:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "numpy" in sys.modules:
        log.warning("NumPy was imported before the BLAS thread limit was set: it may not apply")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bonfire-worker",
        description="Serve a Python training workload to a bonfire trainer over stdin/stdout "
        f"(JSON lines, protocol {PROTOCOL_VERSION}).",
    )
    parser.add_argument(
        "--entry",
        default=DEFAULT_ENTRY,
        metavar="MODULE:FACTORY",
        help="the workload factory, called with the model spec at hello (default: %(default)s)",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        metavar="N",
        help="threads for NumPy's OpenBLAS (default: $OPENBLAS_NUM_THREADS, else 1; "
        "PyTorch keeps its own setting)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log on stderr (default: %(default)s)",
    )
    parser.add_argument("--version", action="version", version=f"bonfire-worker {__version__}")
    return parser


if __name__ == "__main__":
    sys.exit(main())
