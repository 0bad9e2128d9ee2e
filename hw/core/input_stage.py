"""The input stage: the `image` and `words` streams into feature-map write requests.

The image (`image`: one 8-bit pixel channel per beat, raster order, channels innermost) is
taken while its window is open: in the INPUT step, and from step `schedule.input_opens` to the
end, while the image before it finishes (hw/compiler/schedule.py keeps the image's buffer free then).
The stage counts the beats itself; after an image's last beat it takes no more until the
controller has moved past the INPUT step (`advance` there), and `image_ready` says the image's
last word is written. Each beat maps through the input table (the folded input
BN: entry c*256 + pixel); the channels of a pixel are gathered into one word, written when its
last channel arrives. An image wider than the lanes is spread: channel c's value x fills lanes
c*k + l with floor((x + l) / k) (hw/compiler/image_layout.py), k = `schedule.spread`. Where the image is
stored as its first conv's kernel columns (`schedule.columns` = 3), the word of pixel (y, x - 1)
is written when pixel (y, x) arrives: the pixels x - 2, x - 1 and x side by side, kept in two
registers of the row so far; the word of a row's last pixel follows a cycle after it (the next
row's first pixel writes none). LOAD steps (layer tests) take whole feature-map words and write
each at once.
"""
from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.core.feature_maps import FeatureMaps, word_address
from hw.core.layouts import POSITION, write_request
from hw.blocks.pipeline import count_nested, delay
from hw.compiler.schedule import LOAD


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
            "image": In(stream.Signature(unsigned(8))),
            "words": In(stream.Signature(plan.word)),
            "step": In(range(max(2, len(plan.steps)))), "advance": In(1),   # the controller's
            "image_ready": Out(1),
            "take_words": In(1), "word_taken": Out(1),
            "position": In(POSITION),           # of the LOAD word
            "pixel_write": Out(write_request(plan)),
            "word_write": Out(write_request(plan)),
        })

    def elaborate(self, platform):
        m = Module()
        plan, f, pos = self.plan, self.fields, self.position
        if plan.input_step is not None:
            self.take_image(m)
        if LOAD in plan.kinds:        # a board's table has none
            m.d.comb += [self.words.ready.eq(self.take_words),
                         self.word_taken.eq(self.words.valid & self.take_words)]
            m.d.sync += [self.word_write.en.eq(self.word_taken),
                         self.word_write.addr.eq(word_address(pos.g, pos.y, pos.x, f.hb_out, f.wb_out)),
                         self.word_write.data.eq(self.words.payload)]
        return m

    def take_image(self, m):
        plan = self.plan
        index, shape = plan.input_step, plan.steps[plan.input_step].src_shape
        record = plan.records[index]          # the INPUT step's: the window outlasts its step
        window = self.step == index
        if plan.schedule.input_opens < len(plan.steps):
            window |= self.step >= plan.schedule.input_opens
        full = Signal()                       # the last beat taken, the INPUT step not passed
        take = Signal()
        m.d.comb += [take.eq(self.image.valid & window & ~full), self.image.ready.eq(window & ~full)]
        beat_c, beat_y, beat_x = (Signal(range(n), name=f"{axis}_in") for n, axis in zip(shape, "cyx"))
        with m.If(take):
            with m.If(count_nested(m, [(beat_c, beat_c == shape[0] - 1), (beat_x, beat_x == shape[2] - 1),
                                       (beat_y, beat_y == shape[1] - 1)])):
                m.d.sync += full.eq(1)
        with m.If(self.advance & (self.step == index)):
            m.d.sync += full.eq(0)
        m.d.comb += self.image_ready.eq(full & delay(m, full, self.pixel_latency_for(plan.schedule.columns),
                                                     "image_written"))

        table = memory.Memory(shape=unsigned(plan.images.table_bits), depth=max(2, len(plan.images.lut)),
                              init=plan.images.lut, attrs={"rom_style": "block"})
        m.submodules.table = table
        lookup = table.read_port()
        m.d.comb += [lookup.en.eq(1), lookup.addr.eq((beat_c << 8) | self.image.payload)]

        # The looked-up value, registered as it leaves the block RAM (its clock-to-out leaves no
        # room for logic in a 10 ns cycle), arrives two cycles later, with its position.
        looked_up = delay(m, take, 2, "looked_up")
        c, y, x = (delay(m, v, 2, n) for v, n in ((beat_c, "c"), (beat_y, "y"), (beat_x, "x")))
        partial = Signal(plan.word)      # the channels of the pixel so far
        gathered = Signal(plan.word)
        m.d.comb += gathered.eq(partial)
        table_value = delay(m, lookup.data, 1, "table_value")
        value = table_value.as_signed() if plan.table_signed else table_value
        k = plan.schedule.spread
        for j in range(plan.lanes):
            with m.If(c == j // k):
                m.d.comb += gathered[j].eq((value + j % k) >> (k.bit_length() - 1))
        last_channel = c == shape[0] - 1
        with m.If(looked_up):
            m.d.sync += partial.eq(Mux(last_channel, 0, gathered))
        # The write request leaves from registers: the feature maps' writer mux and its
        # register lie beside the block RAMs, across the chip (the routed make-train model's
        # worst path ran from `c` through the last-channel compare into that mux, 10.4 ns).
        arrived = looked_up & last_channel
        if plan.schedule.columns == 1:
            m.d.sync += [self.pixel_write.en.eq(arrived),
                         self.pixel_write.addr.eq(word_address(0, y, x, record["hb_out"], record["wb_out"])),
                         self.pixel_write.data.eq(gathered)]
        else:
            self.write_columns(m, record, arrived, gathered, y, x)

    def write_columns(self, m, record, arrived, pixel, y, x):
        """The words of the image as columns: lane block t of pixel (y, x) holds the pixel at
        (y, x + t - 1), zero past the row's ends; `pixel` has the arriving one in its first
        block."""
        plan = self.plan
        hb, wb, w_last = record["hb_out"], record["wb_out"], record["w_out_last"]
        block = plan.schedule.spread * plan.qmodel.input_shape[0]
        two_left, one_left = Signal(plan.word), Signal(plan.word)    # pixels x - 2 and x - 1
        with m.If(arrived):
            m.d.sync += [two_left.eq(Mux(x == 0, 0, one_left)), one_left.eq(pixel)]
        row_end, row_y = Signal(), Signal.like(y)                    # a row's last word is due
        m.d.sync += [row_end.eq(arrived & (x == w_last)), row_y.eq(y)]
        inside, at_end = Signal(plan.word), Signal(plan.word)
        for j in range(block):
            m.d.comb += [inside[j].eq(two_left[j]), inside[block + j].eq(one_left[j]),
                         inside[2 * block + j].eq(pixel[j]),
                         at_end[j].eq(two_left[j]), at_end[block + j].eq(one_left[j])]
        left_x = Signal.like(x)
        m.d.comb += left_x.eq(x - 1)
        m.d.sync += [
            self.pixel_write.en.eq((arrived & (x != 0)) | row_end),
            self.pixel_write.addr.eq(Mux(row_end, word_address(0, row_y, w_last, hb, wb),
                                         word_address(0, y, left_x, hb, wb))),
            self.pixel_write.data.eq(Mux(row_end, at_end, inside))]
