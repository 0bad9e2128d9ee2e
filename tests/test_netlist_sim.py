"""The synthesized netlist in simulation (sim/netlist.py): the whole core as yosys's synth_ecp5
(the ULX3S build's synthesis) and synth_xilinx (the Arty estimate's) leave it, simulated with
yosys's cell models and the project's block RAM and multiplier models, against the golden model
bit for bit and hw.core.latency's cycles. A netlist with one register's flip-flops stuck at 0
must fail. A random WRN-8-1 on 8x8 images keeps the netlists small (the RTL tests use it too);
`make test` runs the ECP5 netlist, `make test-all` the rest.
"""
import pytest

from hw.board.boards import BOARDS
from hw.core.accelerator import Accelerator
from quantize.golden import run
from quantize.random_model import random_images, random_qmodel
from sim.check import check_network
from sim.harness import simulate
from sim.jobs import schedule_job
from sim.netlist import stuck_at_zero


@pytest.fixture(scope="module")
def model():
    return random_qmodel(depth=8, width=1, input_size=8, num_classes=10, seed=1)


def check_netlist(model, board_name, lanes, pixels, build_dir):
    board = BOARDS[board_name]
    plan = board.family.core_options(lanes, pixels).plan(model)
    result, _ = check_network(plan, random_images(2, model.input_shape, seed=3), build_dir,
                              netlist=board)
    assert result.exact == 2, "\n".join(v.line() for v in result.verdicts)
    assert result.cycles[1] == result.model_cycles          # image to image, back to back
    assert abs(result.cycles[0] - result.model_latency) <= 3  # first image: from its first pixel
    return build_dir / "netlist"


def test_the_ecp5_netlist_is_bit_exact_and_cycle_exact(model, tmp_path):
    """4 lanes x 2 pixels: the smallest netlist that still reads both block-RAM ports."""
    folder = check_netlist(model, "ulx3s_85f", 4, 2, tmp_path)
    netlist = (folder / "netlist_sim.v").read_text()
    # What ran is the gates: LUT4s, flip-flops, carry chains and block RAMs, each with a model.
    for cell in ("LUT4 #(", "TRELLIS_FF #(", "CCU2C #(", "DP16KD_0 ", "MULT18X18D "):
        assert cell in netlist, cell
    assert "always @" not in netlist


@pytest.mark.slow
def test_the_xilinx_netlist_is_bit_exact_and_cycle_exact(model, tmp_path):
    folder = check_netlist(model, "arty_a7", 8, 2, tmp_path)
    netlist = (folder / "netlist_sim.v").read_text()
    for cell in ("LUT6 #(", "FDRE #(", "DSP48E1 #(", "RAMB36E1_0 "):
        assert cell in netlist, cell


@pytest.mark.slow      # a second netlist build: make test-all
@pytest.mark.parametrize("board_name", ["ulx3s_85f", "arty_a7"])
def test_a_netlist_with_a_stuck_register_fails(model, tmp_path, board_name):
    """Lane 0's residual-add enable in the epilogue (a register of its own, kept by name) held
    at 0 in the netlist, so that channel 0 of every residual sum misses its shortcut: the run
    must not match the golden model."""
    board = BOARDS[board_name]
    plan = board.family.core_options(4, 1).plan(model)
    images = random_images(1, model.input_shape, seed=3)
    job = schedule_job(plan, images, run(model, images, keep=False))
    result = simulate(Accelerator(plan), job, tmp_path, netlist=board,
                      fault=stuck_at_zero("epilogue.add_en0"))
    assert not result.passed
    assert "1'h0" in (tmp_path / "netlist" / "accelerator_faulty.v").read_text()
