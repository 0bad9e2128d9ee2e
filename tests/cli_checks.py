"""What every entry point's bad-input tests check: stderr is one line holding the given words."""


def one_stderr_line(err, *words, prefix="", progress_bars=False):
    """The one line of `err` that holds every word and starts with `prefix`; with
    `progress_bars`, tqdm's lines (and blank lines) around it are left out first."""
    lines = err.splitlines()
    if progress_bars:
        lines = [line for line in lines if line.strip() and "%|" not in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]
