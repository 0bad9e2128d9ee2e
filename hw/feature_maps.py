"""The feature-map buffers: block RAMs holding the stored tensors, and who reads and writes them.

Layout of a stored (C, H, W) tensor: word address `word_address(g, y, x, hb, wb)` =
(g << (hb + wb)) | (y << wb) | x, g the channel group, hb/wb the bits of H/W.

A buffer is one RAM per two pixels, the copies written together. Port A of a copy reads and
writes through one address (a step never reads a buffer it writes: one block-RAM port); copy
0's port A also serves the shortcut and DUMP reads. Pixel p reads copy p // 2, on port A (even
p) or port B (odd p). Writes, by priority: the epilogue's word (to dst), its second word (to
dst2), a LOAD word and an INPUT word (to dst).
"""
from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from hw.layouts import POSITION, write_request
from hw.schedule import DUMP


def word_address(group, y, x, hb, wb):
    return (group << (hb + wb)) | (y << wb) | x


class FeatureMaps(wiring.Component):
    def __init__(self, plan):
        self.plan = plan
        pixels, word, request = plan.pixels, plan.word, write_request(plan)
        super().__init__({
            "fields": In(plan.step_layout),
            "read_addr": In(data.ArrayLayout(plan.addr_bits, pixels)),     # the engine's, per pixel
            "read_data": Out(data.ArrayLayout(word, pixels)),              # from buffer src
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
        pixels, ab = plan.pixels, plan.addr_bits
        copies = []        # per buffer, per copy: (port A read, write port, port B read or None)
        for b in range(plan.buffers):
            per_copy = []
            for c in range(-(-pixels // 2)):
                mem = memory.Memory(shape=plan.word_bits, depth=plan.buffer_depth, init=[],
                                    attrs={"ram_style": "block"})
                m.submodules[f"buffer{b}" if c == 0 else f"buffer{b}_copy{c}"] = mem
                per_copy.append((mem.read_port(), mem.write_port(),
                                 mem.read_port() if 2 * c + 1 < pixels else None))
            copies.append(per_copy)

        def pixel_port(per_copy, p):
            port_a, _, port_b = per_copy[p // 2]
            return port_a if p % 2 == 0 else port_b

        first_ports = [per_copy[0][0].data for per_copy in copies]
        for p in range(pixels):
            m.d.comb += self.read_data[p].eq(Array([pixel_port(pc, p).data for pc in copies])[f.src])
        m.d.comb += [self.shortcut_data.eq(Array(first_ports + [Const(0, plan.word_bits)])[f.shortcut]),
                     self.dump_data.eq(Array(first_ports)[f.src])]

        pos = self.position
        dump_addr = Signal(ab)
        m.d.comb += dump_addr.eq(word_address(pos.g, pos.y, pos.x, f.hb_in, f.wb_in))
        requests = [(self.epilogue_write, f.dst), (self.second_write, f.dst2),
                    (self.word_write, f.dst), (self.pixel_write, f.dst)]
        for b, per_copy in enumerate(copies):
            read_addr = Mux(f.src == b, Mux(f.kind == DUMP, dump_addr, self.read_addr[0]),
                            self.shortcut_addr)
            write = Signal(write_request(plan), name=f"write{b}")
            for c, (port_a, write_port, port_b) in enumerate(per_copy):
                addr_a = Signal(ab, name=f"port_a{b}_{c}")
                reads = read_addr if c == 0 else self.read_addr[2 * c]
                m.d.comb += [addr_a.eq(Mux(f.written[b], write.addr, reads)),
                             port_a.en.eq(1), port_a.addr.eq(addr_a),
                             write_port.en.eq(write.en), write_port.addr.eq(addr_a),
                             write_port.data.eq(write.data)]
                if port_b is not None:
                    m.d.comb += [port_b.en.eq(1), port_b.addr.eq(self.read_addr[2 * c + 1])]
            for i, (request, target) in enumerate(requests):
                with (m.Elif if i else m.If)(request.en & (target == b)):
                    m.d.comb += write.eq(request)
        return m
