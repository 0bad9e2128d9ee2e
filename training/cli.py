"""Command-line conventions shared by every entry point: bad usage is one line, exit code 2."""
import argparse


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
