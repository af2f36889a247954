"""One error style for every command (`nucel …`, `nucel-pretrain`, `nucel-finetune`, `nucel-benchmark`,
`nucel-study`): bad input is one line on stderr that names the problem (file, line, option) and what to do, with
exit code 2, as argparse does for a bad option; the traceback only with `--debug`.

Bad input surfaces as ValueError (contents: a malformed row, an unknown setting, a refused release) or OSError
(paths: missing file, a directory where a file is expected); anything else is a bug and keeps its traceback.
"""

import sys

USER_ERRORS = (ValueError, OSError)
EXIT_BAD_INPUT = 2  # argparse's code for a bad command line: bad input is the same kind of mistake
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def add_debug_option(parser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def run_reporting_errors(prog: str, command, debug: bool) -> int:
    """Run `command()`; bad input becomes one line on stderr and exit code 2 (re-raised with `debug`)."""
    try:
        command()
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def one_line(error: BaseException) -> str:
    """The error's message on one line (a wrapped message's continuation lines joined)."""
    message = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        message = f"{error.filename}: {error.strerror}"  # "x.fa: No such file or directory", not "[Errno 2] …"
    return " ".join(part.strip() for part in message.splitlines() if part.strip())
