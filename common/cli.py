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
import signal
import sys


class UsageError(Exception):
    """Bad command line or input: one line, exit 2."""


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
