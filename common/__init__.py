"""Helpers every entry point shares: the command-line conventions (cli) and atomic file writes (files)."""
