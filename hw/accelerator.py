"""The accelerator: the whole network on chip, one layer step at a time.

A controller walks the layer table (hw/schedule.py). A conv step issues one tap per cycle:
`lanes` input channels of each of `pixels` neighbouring output pixels (each read on its own
block-RAM port: a feature-map buffer has one copy per two pixels), against the same `lanes` x
`lanes` weight bits from the weight ROM; `lanes` add/subtract trees per pixel
(hw/addsub_tree.py) feed `lanes` accumulators per pixel. The pixels' finished words queue for
one shared epilogue, one word per cycle (every output takes at least `pixels` taps, so the
queue is empty before the next words finish): requantize (hw/requant.py), optionally add the
shortcut read from another buffer (shifted, zero beyond the stored channels), write,
requantize again for the next layer's input, write. Pool steps reuse the engine depthwise; the
head step sums over pixels, requantizes the logits, takes the argmax and streams logits and
class out. Streams tolerate stalls on both sides.

Ports: `inp` (pixels: one channel value per beat, raster order, channels innermost; or
whole words for LOAD steps) and `out` (DUMP words, or the logits then the class with `last`).
"""
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.addsub_tree import AddSubTree
from hw.latency import pipeline_depth, tree_latency
from hw.memory_images import build_images
from hw.requant import Requantizer
from hw.schedule import CONV, DUMP, HEAD, INPUT, LOAD, POOL, ceil_log2, groups, step_pixels

KINDS = {INPUT: 0, LOAD: 1, CONV: 2, POOL: 3, HEAD: 4, DUMP: 5}


def _bits(lo, hi):
    """Signed width holding lo..hi."""
    return max(2, max(int(lo).bit_length(), int(hi).bit_length()) + 1)


def count_nested(m, digits):
    """Advance an odometer of (counter, at_last) digits, innermost first: each digit steps when
    every digit inside it is at its last value, and wraps to 0 after its own last. Returns the
    condition 'every digit at its last value' (the final count of the loop nest)."""
    inner_done = Const(1)
    for counter, at_last in digits:
        with m.If(inner_done):
            m.d.sync += counter.eq(Mux(at_last, 0, counter + 1))
        inner_done = inner_done & at_last
    return inner_done


class Accelerator(wiring.Component):
    def __init__(self, qmodel, schedule):
        self.qmodel, self.schedule = qmodel, schedule
        self.steps = schedule.steps
        self.lanes, self.pixels = schedule.lanes, schedule.pixels
        self.act_bits = qmodel.act_bits
        self.images = build_images(qmodel, schedule)
        lanes, a = self.lanes, self.act_bits
        if lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two, got {lanes}")
        if self.pixels < 1:
            raise ValueError(f"pixels must be at least 1, got {self.pixels}")
        self.word_bits = lanes * a
        self.tree_latency = tree_latency(lanes)
        self.acc_bits = max([AddSubTree.out_width_for(lanes, a + 1), a + 6] +
                            [qmodel.op(s.weights)["out"]["bits"] for s in self.steps if s.weights])
        self.val_bits = a + 2        # requant/add results: act_bits (+1 for the wide conv2 requant)
        head = [s for s in self.steps if s.kind == HEAD]
        if head:
            h, w = head[0].src_shape[1:]
            self.sum_bits = self.acc_bits + ceil_log2(h * w) + 1
            rq = head[0].requant
            self.logit_bits = _bits(rq.lo, rq.hi) if rq else self.sum_bits
            self.num_classes = head[0].out_shape[0]
            self.padded_classes = -(-self.num_classes // lanes) * lanes
        else:
            self.sum_bits = self.logit_bits = 2
            self.num_classes = self.padded_classes = 1
        self.out_bits = max(self.word_bits, self.logit_bits, 8)
        self.pipeline_depth = pipeline_depth(lanes, self.pixels)
        super().__init__({
            "inp": In(stream.Signature(unsigned(max(8, self.word_bits)))),
            "out": Out(stream.Signature(data.StructLayout({"data": unsigned(self.out_bits),
                                                           "last": 1}))),
            "step": Out(range(max(2, len(self.steps)))),
        })

    # -- the layer table as per-step constants -------------------------------------------
    def _field(self, values, shape):
        return Array([Const(int(v), shape) for v in values])[self.step]

    @staticmethod
    def _requantizer(bank, in_width, out_width):
        return Requantizer(in_width, bank.mult_bits, bank.offset_bits, bank.shift, out_width)

    @staticmethod
    def _operands(requantizer, bank, word, lane):
        """Drive a requantizer's M' and C from lane `lane` of a word of `bank`."""
        field_ = word[lane * bank.field_bits:(lane + 1) * bank.field_bits]
        return [requantizer.multiplier.eq(field_[:bank.mult_bits].as_signed()),
                requantizer.offset.eq(field_[bank.mult_bits:].as_signed())]

    def elaborate(self, platform):
        m = Module()
        steps, lanes, a = self.steps, self.lanes, self.act_bits
        img = self.images
        nb = self.schedule.buffers
        depth = self.schedule.buffer_depth
        ab = max(1, ceil_log2(depth))

        def col(fn, shape):
            return self._field([fn(s, i) for i, s in enumerate(steps)], shape)

        kind = col(lambda s, i: KINDS[s.kind], range(6))
        src = col(lambda s, i: s.src or 0, range(nb))
        dst = col(lambda s, i: s.dst or 0, range(nb))
        written = [col(lambda s, i, b=b: b in (s.dst, s.dst2), 1) for b in range(nb)]
        sc = col(lambda s, i: s.shortcut if s.shortcut is not None else nb, range(nb + 1))
        dst2 = col(lambda s, i: s.dst2 if s.dst2 is not None else nb, range(nb + 1))
        dim = range(1 << 10)
        c_in = col(lambda s, i: s.src_shape[0], dim)
        h_in = col(lambda s, i: s.src_shape[1], dim)
        w_in = col(lambda s, i: s.src_shape[2], dim)
        hb_in = col(lambda s, i: ceil_log2(s.src_shape[1]), range(16))
        wb_in = col(lambda s, i: ceil_log2(s.src_shape[2]), range(16))
        def out_shape(s):
            """What the step's loops run over: the head loops over its input's pixels."""
            if s.kind == DUMP:
                return s.src_shape
            if s.kind == HEAD:
                return (s.out_shape[0],) + tuple(s.src_shape[1:])
            return s.out_shape

        h_out = col(lambda s, i: out_shape(s)[1], dim)
        w_out = col(lambda s, i: out_shape(s)[2], dim)
        hb_out = col(lambda s, i: ceil_log2(out_shape(s)[1]), range(16))
        wb_out = col(lambda s, i: ceil_log2(out_shape(s)[2]), range(16))
        g_out = col(lambda s, i: groups(out_shape(s)[0], lanes), dim)
        g_in = col(lambda s, i: 1 if s.kind == POOL else groups(s.src_shape[0], lanes), dim)
        k_last = col(lambda s, i: s.kernel - 1, range(8))
        stride2 = col(lambda s, i: s.stride == 2, 1)
        pad = col(lambda s, i: s.padding, range(4))
        depthwise = col(lambda s, i: s.kind == POOL, 1)
        P = self.pixels

        def pixel_walk(s):
            """(pixels per cycle, width, height) of the step's output raster."""
            _, h, w = out_shape(s)
            return step_pixels(s, lanes, P), max(1, w), h

        # Pixel p of a step starts at raster index p and advances by the step's pixels per
        # cycle: (y, x) += divmod(pixels, W), with a carry; past the last row it is not valid.
        pg_last = col(lambda s, i: -(-out_shape(s)[1] * out_shape(s)[2] // pixel_walk(s)[0]) - 1, dim)
        adv_x = col(lambda s, i: pixel_walk(s)[0] % pixel_walk(s)[1], dim)
        adv_y = col(lambda s, i: pixel_walk(s)[0] // pixel_walk(s)[1], dim)
        start_y = [col(lambda s, i, p=p: p // pixel_walk(s)[1] if p < pixel_walk(s)[0] else pixel_walk(s)[2],
                       dim) for p in range(P)]
        start_x = [col(lambda s, i, p=p: p % pixel_walk(s)[1], dim) for p in range(P)]
        wbase = col(lambda s, i: img.weight_base.get(i, 0), range(max(2, len(img.weights))))
        pbase = col(lambda s, i: img.params.base.get(i, 0), range(max(2, len(img.params.words))))
        p2base = col(lambda s, i: img.params2.base.get(i, 0), range(max(2, len(img.params2.words))))
        rq = lambda s: s.requant  # noqa: E731
        vb = self.val_bits
        lo = col(lambda s, i: rq(s).lo if rq(s) else 0, signed(max(vb, self.logit_bits)))
        hi = col(lambda s, i: rq(s).hi if rq(s) else 0, signed(max(vb, self.logit_bits)))
        has_rq = col(lambda s, i: rq(s) is not None, 1)
        lo2 = col(lambda s, i: s.requant2.lo if s.requant2 else 0, signed(vb))
        hi2 = col(lambda s, i: s.requant2.hi if s.requant2 else 0, signed(vb))
        add_en = col(lambda s, i: s.fused_add, 1)
        add_r = col(lambda s, i: max(s.add_shift, 0), range(32))
        add_l = col(lambda s, i: max(-s.add_shift, 0), range(8))
        add_lo = col(lambda s, i: s.add_lo, signed(vb))
        add_hi = col(lambda s, i: s.add_hi, signed(vb))
        sc_groups = col(lambda s, i: s.shortcut_groups, dim)
        src_signed = col(lambda s, i: s.src_signed, 1)
        sc_signed = col(lambda s, i: s.shortcut_signed, 1)
        g_src_last = col(lambda s, i: groups(s.src_shape[0], lanes) - 1, dim)
        last_step = len(steps) - 1

        # -- memories ----------------------------------------------------------------------
        # A feature-map buffer is one RAM per two pixels, the copies written together. Port A of
        # a copy reads and writes through one address (a step never reads a buffer it writes:
        # one BRAM port); copy 0's port A also reads the shortcut and dumps. Pixel p reads copy
        # p // 2, on port A (even p) or port B (odd p).
        buffers = []     # per buffer, per copy: (port A read, write, port B read or None)
        for b in range(nb):
            per_copy = []
            for c in range(-(-P // 2)):
                mem = memory.Memory(shape=unsigned(self.word_bits), depth=depth, init=[],
                                    attrs={"ram_style": "block"})
                m.submodules[f"buffer{b}" if c == 0 else f"buffer{b}_copy{c}"] = mem
                per_copy.append((mem.read_port(), mem.write_port(),
                                 mem.read_port() if 2 * c + 1 < P else None))
            buffers.append(per_copy)

        def pixel_port(per_copy, p):
            port_a, _, port_b = per_copy[p // 2]
            return port_a if p % 2 == 0 else port_b

        def rom(name, words, width, style=None):
            mem = memory.Memory(shape=unsigned(max(1, width)), depth=max(2, len(words)),
                                init=words, attrs={"rom_style": style} if style else None)
            m.submodules[name] = mem
            return mem.read_port()

        weights = rom("weights", img.weights, lanes * lanes, "block")
        # The requant parameters are very wide and shallow (a word per output group): as block
        # RAM each would take ~10 RAMB36 for a few dozen words; left unstyled, synthesis builds
        # them from LUTs (yosys finds no LUTRAM mapping for a forced "distributed" sync ROM).
        params = rom("params", img.params.words, lanes * img.params.field_bits)
        params2 = rom("params2", img.params2.words, lanes * img.params2.field_bits)
        lut = rom("lut", img.lut, a, "block")

        # -- controller state --------------------------------------------------------------
        phase = Signal(range(8))
        START, RUN, DRAIN, LOGITS, EMIT, NEXT = range(6)
        drain = Signal(range(64))
        og, ig, ky, kx, pg = (Signal(range(1 << 10), name=n) for n in ("og", "ig", "ky", "kx", "pg"))
        oy = [Signal(range(1 << 11), name=f"oy{p}") for p in range(P)]
        ox = [Signal(range(1 << 10), name=f"ox{p}") for p in range(P)]
        waddr = Signal(range(max(2, len(img.weights))))
        ly, lx, lg, lc = (Signal(range(1 << 10), name=n) for n in ("ly", "lx", "lg", "lc"))
        dump_phase = Signal(2)

        engine = (kind == KINDS[CONV]) | (kind == KINDS[POOL]) | (kind == KINDS[HEAD])
        at_kx, at_ky = kx == k_last, ky == k_last
        at_ig, at_og = ig == g_in - 1, og == g_out - 1
        at_pg = pg == pg_last
        tap_last = at_kx & at_ky & at_ig
        word_last = tap_last & at_og         # the pixels move on after this tap
        issue = Signal()
        m.d.comb += issue.eq((phase == RUN) & engine)

        # -- stage A: addresses, per pixel -------------------------------------------------
        rg = Mux(depthwise, og, ig)
        inb, src_addr, pixel_valid = [], [], []
        for p in range(P):
            iy = Signal(signed(13), name=f"iy{p}")
            ix = Signal(signed(12), name=f"ix{p}")
            m.d.comb += [iy.eq(Mux(stride2, oy[p] << 1, oy[p]) + ky - pad),
                         ix.eq(Mux(stride2, ox[p] << 1, ox[p]) + kx - pad)]
            inb.append((iy >= 0) & (iy < h_in) & (ix >= 0) & (ix < w_in))
            addr = Signal(ab, name=f"src_addr{p}")
            m.d.comb += addr.eq((rg << (hb_in + wb_in)) | (iy[:10] << wb_in) | ix[:10])
            src_addr.append(addr)
            pixel_valid.append(oy[p] < h_out)
        m.d.comb += [weights.addr.eq(waddr), weights.en.eq(1)]

        # Pipeline registers from A to the accumulator: valid, first, last, tags, in-bounds.
        def delay(sig, cycles, name):
            out = sig
            for c in range(cycles):
                r = Signal.like(out, name=f"{name}_d{c + 1}")
                m.d.sync += r.eq(out)
                out = r
            return out

        first_tap = (ig == 0) & (ky == 0) & (kx == 0)
        b_valid = delay(issue, 1, "valid")
        b_first = delay(first_tap, 1, "first")
        b_last = delay(tap_last, 1, "last")
        b_inb = [delay(v, 1, f"inb{p}") for p, v in enumerate(inb)]
        # Tag of a pixel's output word: group, y, x, then the valid bit.
        b_tag = [delay(Cat(og[:10], oy[p][:10], ox[p], pixel_valid[p]), 1, f"tag{p}") for p in range(P)]

        # -- stage B: data -> trees --------------------------------------------------------
        tl = self.tree_latency
        c_valid, c_first, c_last = (delay(s, tl, n) for s, n in
                                    ((b_valid, "cv"), (b_first, "cf"), (b_last, "cl")))
        c_tag = [delay(t, tl, f"ctag{p}") for p, t in enumerate(b_tag)]
        accs = []
        for p in range(P):
            src_word = Signal(self.word_bits, name=f"src_word{p}")
            m.d.comb += src_word.eq(Array([pixel_port(per_copy, p).data for per_copy in buffers])[src])
            lane_in = []
            for j in range(lanes):
                raw = src_word[j * a:(j + 1) * a]
                v = Signal(signed(a + 1), name=f"x{p}_{j}")
                m.d.comb += v.eq(Mux(b_inb[p], Mux(src_signed, raw.as_signed(), raw.as_unsigned()), 0))
                lane_in.append(v)
            c_dw = [delay(v, tl, f"dw{p}_{j}") for j, v in enumerate(lane_in)]
            # -- accumulators --------------------------------------------------------------
            pixel_accs = []
            for o in range(lanes):
                t = AddSubTree(lanes, a + 1)
                m.submodules[f"tree{p}_{o}"] = t
                m.d.comb += [t.x[j].eq(lane_in[j]) for j in range(lanes)]
                m.d.comb += t.w.eq(weights.data[o * lanes:(o + 1) * lanes])
                acc = Signal(signed(self.acc_bits), name=f"acc{p}_{o}")
                contrib = Mux(depthwise, c_dw[o], t.sum)
                with m.If(c_valid):
                    m.d.sync += acc.eq(Mux(c_first, contrib, acc + contrib))
                pixel_accs.append(acc)
            accs.append(pixel_accs)
        e_valid = Signal()
        e_tag = [Signal.like(t, name=f"etag{p}") for p, t in enumerate(c_tag)]
        m.d.sync += [e_valid.eq(c_valid & c_last)] + [e.eq(c) for e, c in zip(e_tag, c_tag)]

        # -- the epilogue queue: the pixels' finished words, one per cycle -----------------
        queue_acc = [[Signal.like(acc, name=f"q{p}_{o}") for o, acc in enumerate(row)]
                     for p, row in enumerate(accs)]
        queue_tag = [Signal.like(t, name=f"qtag{p}") for p, t in enumerate(e_tag)]
        with m.If(e_valid):
            m.d.sync += [q.eq(acc) for qrow, row in zip(queue_acc, accs) for q, acc in zip(qrow, row)]
            m.d.sync += [q.eq(t) for q, t in zip(queue_tag, e_tag)]
        with m.Else():
            for p in range(P):
                if p + 1 < P:
                    m.d.sync += [q.eq(n) for q, n in zip(queue_acc[p], queue_acc[p + 1])]
                    m.d.sync += queue_tag[p].eq(queue_tag[p + 1])
                else:
                    m.d.sync += queue_tag[p][-1].eq(0)
        # The word entering the epilogue next cycle: the first pixel of new words, else the
        # queue's second.
        next_tag = Mux(e_valid, e_tag[0], queue_tag[1]) if P > 1 else e_tag[0]
        e_og, e_oy, e_ox = next_tag[:10], next_tag[10:20], next_tag[20:30]
        out_addr = Signal(ab)
        m.d.comb += out_addr.eq((e_og << (hb_out + wb_out)) | (e_oy << wb_out) | e_ox)
        lane_bits = ceil_log2(lanes)
        k = Signal(range(self.padded_classes + 8))
        # All pixels of a queue share their output group: hold its params address.
        word_og = Signal(10)
        with m.If(e_valid):
            m.d.sync += word_og.eq(e_tag[0][:10])
        param_og = Mux(e_valid, e_tag[0][:10], word_og)
        m.d.comb += [params.addr.eq(pbase + Mux(phase == LOGITS, k >> lane_bits, param_og)),
                     params.en.eq(1),
                     params2.addr.eq(p2base + param_og), params2.en.eq(1)]
        sc_addr = out_addr
        # E1: the queue's head; params and shortcut arrive; requantizers start.
        e1_valid = queue_tag[0][-1]
        e1_acc = queue_acc[0]
        e1_addr = delay(out_addr, 1, "e1addr")
        e1_og = delay(e_og, 1, "e1og")
        rqs = []
        for o in range(lanes):
            r = self._requantizer(img.params, self.acc_bits, vb)
            m.submodules[f"rq{o}"] = r
            m.d.comb += [r.x.eq(e1_acc[o]), *self._operands(r, img.params, params.data, o),
                         r.lo.eq(lo), r.hi.eq(hi)]
            rqs.append(r)
        sc_word = Signal(self.word_bits)
        m.d.comb += sc_word.eq(Array([per_copy[0][0].data for per_copy in buffers] +
                                     [Const(0, self.word_bits)])[sc])
        e3_sc = delay(sc_word, 2, "e3sc")
        e3_valid = delay(e1_valid, 2, "e3v")
        e3_addr = delay(e1_addr, 2, "e3addr")
        e3_og = delay(e1_og, 2, "e3og")
        p2_word = delay(params2.data, 3, "p2w")   # used at E4
        # E3: residual add -> E4 register.
        e4 = []
        for o in range(lanes):
            raw = e3_sc[o * a:(o + 1) * a]
            s = Signal(signed(a + 1), name=f"sc{o}")
            m.d.comb += s.eq(Mux(e3_og < sc_groups, Mux(sc_signed, raw.as_signed(), raw.as_unsigned()), 0))
            wide = Signal(signed(a + 10), name=f"scw{o}")
            m.d.comb += wide.eq(((s << add_l) + Mux(add_r == 0, 0, (1 << add_r) >> 1)) >> add_r)
            total = Signal(signed(a + 11), name=f"sum{o}")
            m.d.comb += total.eq(rqs[o].y + wide)
            r = Signal(signed(vb), name=f"e4_{o}")
            m.d.sync += r.eq(Mux(add_en, Mux(total < add_lo, add_lo, Mux(total > add_hi, add_hi, total)),
                                 rqs[o].y))
            e4.append(r)
        e4_valid = delay(e3_valid, 1, "e4v")
        e4_addr = delay(e3_addr, 1, "e4addr")
        # E4: write dst; second requantizers start.
        rq2s = []
        for o in range(lanes):
            r = self._requantizer(img.params2, vb, vb)
            m.submodules[f"rq2_{o}"] = r
            m.d.comb += [r.x.eq(e4[o]), *self._operands(r, img.params2, p2_word, o),
                         r.lo.eq(lo2), r.hi.eq(hi2)]
            rq2s.append(r)
        e6_valid = delay(e4_valid, 2, "e6v")
        e6_addr = delay(e4_addr, 2, "e6addr")
        writes_engine = e4_valid & ((kind == KINDS[CONV]) | (kind == KINDS[POOL]))
        writes_second = e6_valid & (kind == KINDS[CONV]) & (dst2 != nb)

        # -- head: global sums, logits, argmax -----------------------------------------------
        sums = [Signal(signed(self.sum_bits), name=f"gsum{c}") for c in range(self.padded_classes)]
        with m.If(e_valid & (kind == KINDS[HEAD])):
            first_pixel = (e_oy == 0) & (e_ox == 0)
            for c, total in enumerate(sums):
                with m.If(e_og == c // lanes):
                    m.d.sync += total.eq(Mux(first_pixel, 0, total) + accs[0][c % lanes])
        # LOGITS: k walks the classes; params for k's group arrive one cycle later (k1).
        k1 = delay(k, 1, "k1")
        logit_rq = self._requantizer(img.params, self.sum_bits, self.logit_bits)
        m.submodules.logit_rq = logit_rq
        pw = img.params.field_bits
        lane_field = Array([params.data[o * pw:(o + 1) * pw] for o in range(lanes)])[k1 % lanes]
        class_sum = Array(sums)[k1]
        m.d.comb += [logit_rq.x.eq(class_sum), *self._operands(logit_rq, img.params, lane_field, 0),
                     logit_rq.lo.eq(lo), logit_rq.hi.eq(hi)]
        logits = [Signal(signed(self.logit_bits), name=f"logit{c}") for c in range(self.num_classes)]
        best = Signal(signed(self.logit_bits))
        cls = Signal(range(max(2, self.num_classes)))
        k_done = delay(k1, Requantizer.latency, "kd")
        raw_sum = delay(class_sum, Requantizer.latency, "rawsum")
        logit_value = Mux(has_rq, logit_rq.y, raw_sum)
        logit_valid = delay(delay((phase == LOGITS) & (k < self.num_classes), 1, "lv0"),
                            Requantizer.latency, "lv")
        with m.If(logit_valid):
            for c in range(self.num_classes):
                with m.If(k_done == c):
                    m.d.sync += logits[c].eq(logit_value)
            with m.If((k_done == 0) | (logit_value > best)):   # strict: ties keep the lower class
                m.d.sync += [best.eq(logit_value), cls.eq(k_done)]

        # -- buffer ports ------------------------------------------------------------------
        dump_addr = Signal(ab)
        m.d.comb += dump_addr.eq((lg << (hb_in + wb_in)) | (ly << wb_in) | lx)
        load_addr = Signal(ab)
        m.d.comb += load_addr.eq((lg << (hb_out + wb_out)) | (ly << wb_out) | lx)
        in_word = Signal(self.word_bits)            # INPUT: lanes gathered over channels
        lut_valid = Signal()
        lut_c, lut_y, lut_x = Signal.like(lc), Signal.like(ly), Signal.like(lx)
        gathered = Signal(self.word_bits)
        m.d.comb += gathered.eq(in_word)
        for j in range(lanes):
            with m.If(lut_c == j):
                m.d.comb += gathered[j * a:(j + 1) * a].eq(lut.data)
        input_write = lut_valid & (lut_c == c_in - 1)
        accept = Signal()
        m.d.comb += accept.eq(self.inp.valid & self.inp.ready)
        for b, per_copy in enumerate(buffers):
            read_addr = Mux(src == b, Mux(kind == KINDS[DUMP], dump_addr, src_addr[0]), sc_addr)
            write_addr = Signal(ab, name=f"write_addr{b}")
            write_en = Signal(name=f"write_en{b}")
            write_data = Signal(self.word_bits, name=f"write_data{b}")
            for c, (port_a, wp, port_b) in enumerate(per_copy):
                addr_a = Signal(ab, name=f"port_a{b}_{c}")
                reads = read_addr if c == 0 else src_addr[2 * c]
                m.d.comb += [addr_a.eq(Mux(written[b], write_addr, reads)),
                             port_a.en.eq(1), port_a.addr.eq(addr_a),
                             wp.en.eq(write_en), wp.addr.eq(addr_a), wp.data.eq(write_data)]
                if port_b is not None:
                    m.d.comb += [port_b.en.eq(1), port_b.addr.eq(src_addr[2 * c + 1])]
            with m.If(writes_engine & (dst == b)):
                m.d.comb += [write_en.eq(1), write_addr.eq(e4_addr),
                             write_data.eq(Cat(*[r[:a] for r in e4]))]
            with m.Elif(writes_second & (dst2 == b)):
                m.d.comb += [write_en.eq(1), write_addr.eq(e6_addr),
                             write_data.eq(Cat(*[r.y[:a] for r in rq2s]))]
            with m.Elif((kind == KINDS[LOAD]) & accept & (dst == b)):
                m.d.comb += [write_en.eq(1), write_addr.eq(load_addr),
                             write_data.eq(self.inp.payload[:self.word_bits])]
            with m.Elif((kind == KINDS[INPUT]) & input_write & (dst == b)):
                m.d.comb += [write_en.eq(1), write_addr.eq((lut_y << wb_out) | lut_x),
                             write_data.eq(gathered)]

        # -- INPUT / LOAD stream side ------------------------------------------------------
        m.d.comb += [lut.en.eq(1), lut.addr.eq((lc << 8) | self.inp.payload[:8])]
        m.d.sync += [lut_valid.eq((kind == KINDS[INPUT]) & accept),
                     lut_c.eq(lc), lut_y.eq(ly), lut_x.eq(lx)]
        with m.If(lut_valid):
            m.d.sync += in_word.eq(Mux(lut_c == c_in - 1, 0, gathered))
        m.d.comb += self.inp.ready.eq((phase == RUN) & ((kind == KINDS[INPUT]) | (kind == KINDS[LOAD])))

        def advance_stream(channels):
            """Count (g, y, x, c) with c innermost; returns the 'last beat' condition."""
            return count_nested(m, [(lc, lc == channels - 1), (lx, lx == w_out - 1),
                                    (ly, ly == h_out - 1), (lg, lg == g_out - 1)])

        # -- the controller ----------------------------------------------------------------
        m.d.comb += self.out.valid.eq(0)
        with m.Switch(phase):
            with m.Case(START):
                m.d.sync += [y.eq(start) for y, start in zip(oy, start_y)]
                m.d.sync += [x.eq(start) for x, start in zip(ox, start_x)]
                m.d.sync += [pg.eq(0), og.eq(0), ig.eq(0), ky.eq(0), kx.eq(0),
                             waddr.eq(wbase), ly.eq(0), lx.eq(0), lg.eq(0), lc.eq(0),
                             dump_phase.eq(0), k.eq(0), phase.eq(RUN)]
            with m.Case(RUN):
                with m.If(engine):
                    done = count_nested(m, [(kx, at_kx), (ky, at_ky), (ig, at_ig), (og, at_og),
                                            (pg, at_pg)])
                    with m.If(word_last):
                        for y, x in zip(oy, ox):
                            wrap = x + adv_x >= w_out
                            m.d.sync += [x.eq(Mux(wrap, x + adv_x - w_out, x + adv_x)),
                                         y.eq(y + adv_y + wrap)]
                    # Weight words run along (og, ig, ky, kx); every pixel group starts over.
                    m.d.sync += waddr.eq(Mux(word_last, wbase, waddr + 1))
                    with m.If(done):
                        m.d.sync += [phase.eq(DRAIN), drain.eq(self.pipeline_depth)]
                with m.Elif((kind == KINDS[INPUT]) & accept):
                    with m.If(advance_stream(c_in)):
                        m.d.sync += [phase.eq(DRAIN), drain.eq(2)]
                with m.Elif((kind == KINDS[LOAD]) & accept):
                    with m.If(advance_stream(1)):
                        m.d.sync += [phase.eq(DRAIN), drain.eq(1)]
                with m.Elif(kind == KINDS[DUMP]):
                    with m.Switch(dump_phase):
                        with m.Case(0):
                            m.d.sync += dump_phase.eq(1)       # address out, data next cycle
                        with m.Case(1):
                            m.d.comb += [self.out.valid.eq(1),
                                         self.out.payload.data.eq(Array([c[0][0].data for c in buffers])[src]),
                                         self.out.payload.last.eq((lx == w_in - 1) & (ly == h_in - 1)
                                                                  & (lg == g_src_last))]
                            with m.If(self.out.ready):
                                m.d.sync += dump_phase.eq(0)
                                last = count_nested(m, [(lx, lx == w_in - 1), (ly, ly == h_in - 1),
                                                        (lg, lg == g_src_last)])
                                with m.If(last):
                                    m.d.sync += phase.eq(NEXT)
            with m.Case(DRAIN):
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 0):
                    m.d.sync += phase.eq(Mux(kind == KINDS[HEAD], LOGITS, NEXT))
            with m.Case(LOGITS):
                m.d.sync += k.eq(k + 1)
                with m.If(k == self.num_classes + Requantizer.latency + 1):
                    m.d.sync += [k.eq(0), phase.eq(EMIT)]
            with m.Case(EMIT):
                m.d.comb += [self.out.valid.eq(1),
                             self.out.payload.last.eq(k == self.num_classes)]
                m.d.comb += self.out.payload.data.eq(
                    Mux(k == self.num_classes, cls,
                        Array([lg_.as_signed() for lg_ in logits])[k[:ceil_log2(max(2, self.num_classes))]]
                        .as_signed()))
                with m.If(self.out.ready):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == self.num_classes):
                        m.d.sync += phase.eq(NEXT)
            with m.Case(NEXT):
                m.d.sync += [self.step.eq(Mux(self.step == last_step, 0, self.step + 1)),
                             phase.eq(START)]
        return m

