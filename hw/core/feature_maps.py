"""The feature-map buffers: block RAMs holding the stored tensors, and who reads and writes them.

Layout of a stored (C, H, W) tensor: word address `word_address(g, y, x, hb, wb)` =
(g << (hb + wb)) | (y << wb) | x, g the channel group, hb/wb the bits of H/W.

A buffer is one RAM per two pixels, the copies written together. Port A of a copy reads and
writes through one address (a step never reads a buffer it writes: one block-RAM port); copy
0's port A also serves the shortcut and DUMP reads. Pixel p reads copy p // 2, on port A (even
p) or port B (odd p). Writes, by priority: the epilogue's word (to dst), its second word (to
dst2), a LOAD word (to dst) and an image word (to the INPUT step's dst, in whatever step:
hw/core/input_stage.py).

Every read port's address and data are registered right at the block RAM, after the address
muxes and before any data mux: an ECP5 block RAM's clock-to-out is 5.8 ns, which leaves no room
for logic in a 10 ns cycle, and a buffer's block RAMs lie apart across the chip (the routed
`make train` model's worst path ran from the step's `src` through the address muxes to a block
RAM's address, 13.0 ns of which 10.3 routing). The mux over the buffers (by the step's `src` or
`shortcut`) has a cycle of its own too: behind it the engine's first adders sat in the same
cycle (12.5 ns in the routed 16 x 2 design). The data register has a second register behind
it: the first's one user, so the placer keeps the first beside its block RAM (with the buffer
muxes as its users it sat 26 columns and 52 rows away: 5.6 ns clock-to-out and 5.2 ns of
route, the routed model's worst path). A word is out `read_latency` = 5 cycles after its
address: the address register, the read, the data register, its second, the buffer mux's.

Every buffer's write request (enable, address, word) is registered right at the block RAM too,
after the mux over the four writers: the mux follows the step's fields (which buffer, which
writer), and a route from them to a block RAM's address across the chip leaves no room for it.
A word lands `write_latency` = 1 cycle after its request; the drains count it. While the
registered enable is high, port A's address is the write's (a step never reads a buffer it
writes).

The read ports are written as an asynchronous read and a register, which synthesis folds into
the block RAM's synchronous read; the memory's `no_rw_check` then tells it that a read of a word
being written may return anything. That holds: a step never reads a buffer it writes. A
synchronous read port would ask for the old word, which the ECP5's pseudo-dual-port block RAM
does not promise, and yosys would build collision logic around it (a slow path).
"""
from amaranth import Array, Const, Module, Mux, Signal, Value
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from common.bits import ceil_div
from hw.core.layouts import POSITION, write_request
from hw.blocks.pipeline import delay, delay_copies, lane_groups
from hw.compiler.schedule import DUMP


def word_address(group, y, x, hb, wb):
    return (group << (hb + wb)) | (y << wb) | x


def read_port(m, mem, name):
    """(the port, its word three cycles after the port's address): the block RAM's read, then
    two registers, each fed by nothing else."""
    port = mem.read_port(domain="comb")
    read = Signal.like(port.data, name=f"{name}_read")
    m.d.sync += read.eq(port.data)
    return port, delay(m, read, 2, name)


class FeatureMaps(wiring.Component):
    read_latency = 5
    write_latency = 1

    def __init__(self, plan):
        self.plan = plan
        pixels, word, request = plan.pixels_per_cycle, plan.word, write_request(plan)
        super().__init__({
            "fields": In(plan.step_layout),
            "read_addr": In(data.ArrayLayout(plan.addr_bits, pixels)),     # the engine's, per pixel
            # from buffer src, per pixel a copy per group of trees (`lane_groups`)
            "read_data": Out(data.ArrayLayout(data.ArrayLayout(word, len(lane_groups(plan.lanes))), pixels)),
            "shortcut_addr": In(plan.addr_bits),
            "shortcut_data": Out(word),         # from buffer `shortcut`; zero when there is none
            "position": In(POSITION),           # of the DUMP word
            "dump_data": Out(word),
            "epilogue_write": In(request), "second_write": In(request),
            "word_write": In(request), "pixel_write": In(request),
        })

    def elaborate(self, platform):
        m = Module()
        plan, f = self.plan, self.fields
        pixels, ab = plan.pixels_per_cycle, plan.addr_bits
        copies = []        # per buffer, per copy: (port A read, write port, port B read or None)
        data_a, data_b = [], []     # per buffer, per copy: the registered data of port A, B
        for b in range(plan.buffers):
            per_copy, words_a, words_b = [], [], []
            for c in range(ceil_div(pixels, 2)):
                mem = memory.Memory(shape=plan.word_bits, depth=plan.buffer_depth, init=[],
                                    attrs={"ram_style": "block", "no_rw_check": 1})
                m.submodules[f"buffer{b}" if c == 0 else f"buffer{b}_copy{c}"] = mem
                port_a, word_a = read_port(m, mem, f"data{b}_{c}a")
                port_b, word_b = read_port(m, mem, f"data{b}_{c}b") if 2 * c + 1 < pixels else (None, None)
                per_copy.append((port_a, mem.write_port(), port_b))
                words_a.append(word_a)
                words_b.append(word_b)
            copies.append(per_copy)
            data_a.append(words_a)
            data_b.append(words_b)

        def pixel_data(b, p):
            return (data_a if p % 2 == 0 else data_b)[b][p // 2]

        first_ports = [data_a[b][0] for b in range(plan.buffers)]
        # The buffer mux's select: copies of the step's `src` and `shortcut` kept here, so that
        # the select comes from a register beside the mux (two cycles old, still the same step:
        # a step's reads are out before it ends). A pixel's word goes to every add/subtract
        # tree of the pixel: each group of trees (`lane_groups`) reads a copy of its own, muxed
        # by a select of its own, so that no register reaches all of them across the chip.
        groups = lane_groups(plan.lanes)
        for p in range(pixels):
            for k, select in enumerate(delay_copies(m, f.src, 2, len(groups), f"data_src{p}")):
                m.d.sync += self.read_data[p][k].eq(Array([pixel_data(b, p) for b in range(plan.buffers)])[select])

        def lanes_of(word, group):
            return Value.cast(word)[group.start * plan.act_bits:group.stop * plan.act_bits]

        for group, select in zip(groups, delay_copies(m, f.shortcut, 2, len(groups), "data_shortcut")):
            words = [lanes_of(w, group) for w in first_ports]
            m.d.sync += lanes_of(self.shortcut_data, group).eq(Array(words + [Const(0, len(words[0]))])[select])
        engine_addr = self.read_addr[0]
        if DUMP in plan.kinds:        # a board's table has no DUMP steps: no DUMP mux
            m.d.sync += self.dump_data.eq(Array(first_ports)[delay(m, f.src, 2, "dump_src")])
            pos, dump_addr = self.position, Signal(ab)
            m.d.comb += dump_addr.eq(word_address(pos.g, pos.y, pos.x, f.hb_in, f.wb_in))
            engine_addr = Mux(f.kind == DUMP, dump_addr, engine_addr)
        # The image's words go to the INPUT step's buffer while the step may be another.
        image = plan.steps[plan.input_step].dst if plan.input_step is not None else plan.buffers
        requests = [(self.epilogue_write, f.dst), (self.second_write, f.dst2),
                    (self.word_write, f.dst), (self.pixel_write, image)]
        for b, per_copy in enumerate(copies):
            read_addr = Mux(f.src == b, engine_addr, self.shortcut_addr)
            chosen = Signal(write_request(plan), name=f"chosen{b}")
            write = Signal(write_request(plan), name=f"write{b}")
            m.d.sync += write.eq(chosen)
            for c, (port_a, write_port, port_b) in enumerate(per_copy):
                addr_a = Signal(ab, name=f"port_a{b}_{c}")
                reads = delay(m, read_addr if c == 0 else self.read_addr[2 * c], 1, f"read_a{b}_{c}")
                m.d.comb += [addr_a.eq(Mux(write.en, write.addr, reads)), port_a.addr.eq(addr_a),
                             write_port.en.eq(write.en), write_port.addr.eq(addr_a),
                             write_port.data.eq(write.data)]
                if port_b is not None:
                    m.d.comb += port_b.addr.eq(delay(m, self.read_addr[2 * c + 1], 1, f"read_b{b}_{c}"))
            for i, (request, target) in enumerate(requests):
                with (m.Elif if i else m.If)(request.en & (target == b)):
                    m.d.comb += chosen.eq(request)
        return m
