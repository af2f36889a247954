"""One error style for every command: bad input is one line on stderr that names the problem (file, line, option) and
what to do, with exit code 2, as argparse does for a bad option; the traceback only with `--debug`.

Bad input surfaces as ValueError (contents: a malformed row, an unknown setting, a refused release) or OSError
(paths: missing file, a directory where a file is expected); anything else is a bug and keeps its traceback.

An interruption (Ctrl-C, and SIGTERM or SIGHUP as `kill`, `timeout`, `scancel` or a closed terminal send them) ends
the command the same way: the signal is raised as KeyboardInterrupt, so every output being written is removed on
the way out (outputs are staged beside their names and renamed only when complete), and the command says so in one
line and exits with the shell's code for that signal (128 + its number).
"""

import signal
import sys
from contextlib import contextmanager
from pathlib import Path

USER_ERRORS = (ValueError, OSError)
EXIT_BAD_INPUT = 2  # argparse's code for a bad command line: bad input is the same kind of mistake
ENDING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Interrupted(KeyboardInterrupt):
    """An interruption that knows what it left behind (or did not): its message completes "interrupted; …"."""


def add_debug_option(parser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def run_reporting_errors(prog: str, command, debug: bool) -> int:
    """Run `command()`; bad input becomes one line on stderr and exit code 2 (re-raised with `debug`); an
    interruption one line and 128 + the signal's number."""
    received = [signal.SIGINT]

    def interrupt(signum, frame):
        received[0] = signum
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in ENDING_SIGNALS}
    try:
        command()
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as interruption:
        if debug:
            raise
        detail = f"; {interruption}" if isinstance(interruption, Interrupted) else ""
        print(f"{prog}: interrupted ({signal.Signals(received[0]).name}){detail}", file=sys.stderr)
        return 128 + received[0]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def one_line(error: BaseException) -> str:
    """The error's message on one line (a wrapped message's continuation lines joined)."""
    message = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        message = f"{error.filename}: {error.strerror}"  # "x.fa: No such file or directory", not "[Errno 2] …"
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


@contextmanager
def interruption_reported(output: str | Path):
    """Name `output` in the interruption's line: it was not written, and no partial file is left."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(
            f"{output} was not written and no partial file is left; run the command again to start over"
        ) from None
