"""A bench's parameters: the dict the host gave `sim.runner.run_cocotb(..., params=...)`."""
import json
import os

from sim.runner import BENCH_PARAMS_ENV


def bench_params(*required, **defaults):
    """The parameters of this run: `defaults` overridden by those given to run_cocotb.

    `required` names must be given. A given name that is neither required nor has a default is
    an error: a misspelt parameter would otherwise be ignored silently. Outside run_cocotb
    (no $BITWRN_BENCH_PARAMS) nothing is given.
    """
    path = os.environ.get(BENCH_PARAMS_ENV)
    given = {}
    if path:
        with open(path) as f:
            given = json.load(f)
    missing = [k for k in required if k not in given]
    unknown = sorted(set(given) - set(required) - set(defaults))
    if missing or unknown:
        wrong = ", ".join(f"{what} {', '.join(names)}" for what, names in
                          (("missing", missing), ("unknown", unknown)) if names)
        raise ValueError(f"bench parameters ({path}): {wrong}; known: "
                         f"{', '.join(sorted([*required, *defaults]))}")
    return {**defaults, **given}
