"""Command-line conventions shared by every entry point: bad usage is one line, exit code 2.

    def main(argv=None):
        args = build_parser().parse_args(argv)      # a OneLineParser
        return run_main(PROG, lambda: work(args), errors=(DatasetError,))

`work` raises UsageError (or one of `errors`) for a bad command line or input; run_main turns it
into `PROG: error: MESSAGE` on stderr and exit code 2. Ctrl-C and SIGTERM both stop `work` as a
KeyboardInterrupt, so its `finally` blocks and context managers clean up (temporary folders,
child processes); then one line says what is left, and the exit code is 130.
"""
import argparse
import math
import os
import signal
import sys


class UsageError(Exception):
    """Bad command line or input: one line, exit 2."""


def integer(lo, hi, why=""):
    """argparse type: an integer lo..hi. Every numeric option has both bounds, the upper one from
    the real limit it meets (`why`, said when a value is refused): a part's clock, a format's
    field, the data at hand.

    >>> integer(1, 16, "the lanes of a word")("32")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be an integer 1..16 (the lanes of a word), got '32'
    """
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer {lo}..{hi}"
                                             + (f" ({why})" if why else "") + f", got {text!r}")
        return value
    return parse


def number(lo, hi, why="", above=False):
    """argparse type: a finite number lo..hi (above: greater than lo); see `integer`.

    >>> number(0, 1, above=True)("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a number > 0 and <= 1, got '0'
    """
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (lo < value if above else lo <= value) and value <= hi):
            want = f"> {lo:g} and <= {hi:g}" if above else f"{lo:g}..{hi:g}"
            raise argparse.ArgumentTypeError(f"must be a number {want}"
                                             + (f" ({why})" if why else "") + f", got {text!r}")
        return value
    return parse


def path_arg(text):
    """argparse type for every path option and argument, input or output: the one path check.
    An empty path is refused (it would otherwise mean the current folder, or the default), and
    so is a symlink whose target is gone (an output would be made at the target, an input would
    read as missing without a word about the link). Existence and kind are the readers' to check,
    with their own fixes.

    >>> path_arg("")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: is empty: give a path
    """
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: give a path")
    if os.path.islink(text) and not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text} is a symlink to {os.readlink(text)}, which does "
                                         "not exist: fix the link or give another path")
    return text


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _terminate(signum, frame):
    raise KeyboardInterrupt


def run_main(prog, work, errors=(), interrupted="its outputs are as they were before it started"):
    """Run `work()` and return the exit status: `work`'s own when it returns an int, else 0.

    A UsageError, or an exception of a class in `errors`, becomes one line on stderr and status 2
    (whitespace runs, newlines included, become one space):

    >>> import contextlib
    >>> def work():
    ...     raise UsageError("--lanes must be a power of two,\\n   got 6")
    >>> with contextlib.redirect_stderr(sys.stdout):
    ...     status = run_main("python -m hw.build", work)
    python -m hw.build: error: --lanes must be a power of two, got 6
    >>> status
    2
    >>> run_main("prog", lambda: 1), run_main("prog", lambda: {"a result": 0})
    (1, 0)
    """
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        status = work()
    except (UsageError, *errors) as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; {interrupted}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return status if isinstance(status, int) else 0
