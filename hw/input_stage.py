"""The input stage: the `pixels` and `words` streams into feature-map write requests.

INPUT steps take one 8-bit pixel channel per beat (raster order, channels innermost) and map
it through the input table (the folded input BN: entry c*256 + pixel); the channels of a pixel
are gathered into one word, written when its last channel arrives. An image wider than the
lanes is spread: channel c's value x fills lanes c*k + l with floor((x + l) / k)
(hw/lane_width.py), k = `schedule.spread`. Where the image is stored as its first conv's kernel
columns (`schedule.columns` = 3), the word of pixel (y, x - 1) is written when pixel (y, x)
arrives: the pixels x - 2, x - 1 and x side by side, kept in two registers of the row so far;
the word of a row's last pixel follows a cycle after it (the next row's first pixel writes
none). LOAD steps (layer tests) take whole feature-map words and write each at once.
"""
from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.feature_maps import FeatureMaps, word_address
from hw.layouts import POSITION, write_request
from hw.pipeline import delay
from hw.schedule import INPUT


class InputStage(wiring.Component):
    # the table read, its register, the gathered word, its write request's register, the write
    pixel_latency = 4 + FeatureMaps.write_latency
    word_latency = 2 + FeatureMaps.write_latency      # the beat, the request's register, the write

    @classmethod
    def pixel_latency_for(cls, columns):
        """Cycles from the last pixel's beat to its word written: as columns, the last row's
        last word comes a cycle later."""
        return cls.pixel_latency + (columns > 1)

    def __init__(self, plan):
        self.plan = plan
        super().__init__({
            "fields": In(plan.step_layout),
            "pixels": In(stream.Signature(unsigned(8))),
            "words": In(stream.Signature(plan.word)),
            "take_pixels": In(1), "pixel_taken": Out(1),
            "take_words": In(1), "word_taken": Out(1),
            "position": In(POSITION),
            "pixel_write": Out(write_request(plan)),
            "word_write": Out(write_request(plan)),
        })

    def elaborate(self, platform):
        m = Module()
        plan, f, pos = self.plan, self.fields, self.position
        table = memory.Memory(shape=unsigned(plan.images.table_bits), depth=max(2, len(plan.images.lut)),
                              init=plan.images.lut, attrs={"rom_style": "block"})
        m.submodules.table = table
        lookup = table.read_port()
        m.d.comb += [self.pixels.ready.eq(self.take_pixels), self.words.ready.eq(self.take_words),
                     self.pixel_taken.eq(self.pixels.valid & self.take_pixels),
                     self.word_taken.eq(self.words.valid & self.take_words),
                     lookup.en.eq(1), lookup.addr.eq((pos.c << 8) | self.pixels.payload)]

        # The looked-up value, registered as it leaves the block RAM (its clock-to-out leaves no
        # room for logic in a 10 ns cycle), arrives two cycles later, with its position.
        looked_up = delay(m, self.pixel_taken, 2, "looked_up")
        c, y, x = (delay(m, v, 2, n) for v, n in ((pos.c, "c"), (pos.y, "y"), (pos.x, "x")))
        partial = Signal(plan.word)      # the channels of the pixel so far
        gathered = Signal(plan.word)
        m.d.comb += gathered.eq(partial)
        table_value = delay(m, lookup.data, 1, "table_value")
        value = table_value.as_signed() if plan.table_signed else table_value
        k = plan.schedule.spread
        for j in range(plan.lanes):
            with m.If(c == j // k):
                m.d.comb += gathered[j].eq((value + j % k) >> (k.bit_length() - 1))
        last_channel = c == f.c_in_last
        with m.If(looked_up):
            m.d.sync += partial.eq(Mux(last_channel, 0, gathered))
        # Both write requests leave from registers: the feature maps' writer mux and its
        # register lie beside the block RAMs, across the chip (the routed make-train model's
        # worst path ran from `c` through the last-channel compare into that mux, 10.4 ns).
        arrived = looked_up & last_channel
        if plan.schedule.columns == 1:
            m.d.sync += [self.pixel_write.en.eq((f.kind == INPUT) & arrived),
                         self.pixel_write.addr.eq(word_address(0, y, x, f.hb_out, f.wb_out)),
                         self.pixel_write.data.eq(gathered)]
        else:
            self.write_columns(m, arrived, gathered, y, x)
        m.d.sync += [self.word_write.en.eq(self.word_taken),
                     self.word_write.addr.eq(word_address(pos.g, pos.y, pos.x, f.hb_out, f.wb_out)),
                     self.word_write.data.eq(self.words.payload)]
        return m

    def write_columns(self, m, arrived, pixel, y, x):
        """The words of the image as columns: lane block t of pixel (y, x) holds the pixel at
        (y, x + t - 1), zero past the row's ends; `pixel` has the arriving one in its first
        block."""
        plan, f = self.plan, self.fields
        block = plan.schedule.spread * plan.qmodel.input_shape[0]
        two_left, one_left = Signal(plan.word), Signal(plan.word)    # pixels x - 2 and x - 1
        with m.If(arrived):
            m.d.sync += [two_left.eq(Mux(x == 0, 0, one_left)), one_left.eq(pixel)]
        row_end, row_y = Signal(), Signal.like(y)                    # a row's last word is due
        m.d.sync += [row_end.eq(arrived & (x == f.w_out_last)), row_y.eq(y)]
        inside, at_end = Signal(plan.word), Signal(plan.word)
        for j in range(block):
            m.d.comb += [inside[j].eq(two_left[j]), inside[block + j].eq(one_left[j]),
                         inside[2 * block + j].eq(pixel[j]),
                         at_end[j].eq(two_left[j]), at_end[block + j].eq(one_left[j])]
        left_x = Signal.like(x)
        m.d.comb += left_x.eq(x - 1)
        m.d.sync += [
            self.pixel_write.en.eq((f.kind == INPUT) & ((arrived & (x != 0)) | row_end)),
            self.pixel_write.addr.eq(Mux(row_end, word_address(0, row_y, f.w_out_last, f.hb_out, f.wb_out),
                                         word_address(0, y, left_x, f.hb_out, f.wb_out))),
            self.pixel_write.data.eq(Mux(row_end, at_end, inside))]
