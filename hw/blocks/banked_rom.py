"""A wide ROM in banks of block-RAM depth, each bank's word registered before the mux over them.

A ROM deeper than one block RAM at its width (`block_ram_depth`: an ECP5 DP16KD holds 512 words
of 36 bits, 1024 of 18, 2048 of 9, ...; wider words are tiled from 36-bit columns) is, as
synthesis builds it, several block RAMs and a mux over their outputs on the read's path; a block
RAM's clock-to-out (5.8 ns on the ECP5) leaves no room for that mux in a 10 ns cycle. Here each
bank is its own memory, its word registered as it leaves the block RAM, and the mux (its select
delayed to match) comes a cycle later, before the output register. The address is registered
before it fans out to the banks. `latency` cycles from `addr` to `data` for any depth, at least
`MIN_LATENCY` = 4 (the address register, the read, the bank's register, the mux's register; with
one bank the same registers are there, and no mux); more are registers after the mux. A wide
word can be muxed in `parts` equal slices, each with its own copy of the select, so that no one
register steers the whole word.
"""
from amaranth import Array, Cat, Module, Shape
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from common.bits import ceil_div
from hw.blocks.pipeline import delay, delay_copies
from amaranth.utils import ceil_log2

BLOCK_RAM_BITS = 16384                   # an ECP5 DP16KD without its parity bits
BLOCK_RAM_WIDTHS = (1, 2, 4, 9, 18, 36)  # its data widths; depth = BLOCK_RAM_BITS // (width - parity)


def block_ram_depth(width):
    """Words of `width` bits in one block RAM at the narrowest data width that holds them (36
    for wider words, which are tiled from 36-bit columns).

    >>> [block_ram_depth(w) for w in (1, 16, 18, 36, 256)]
    [16384, 1024, 1024, 512, 512]
    """
    fit = next((w for w in BLOCK_RAM_WIDTHS if w >= width), BLOCK_RAM_WIDTHS[-1])
    return BLOCK_RAM_BITS // (fit - fit // 9)


class BankedRom(wiring.Component):
    MIN_LATENCY = 4

    def __init__(self, shape, words, latency=MIN_LATENCY, bank_depth=None, parts=1):
        if latency < self.MIN_LATENCY:
            raise ValueError(f"a BankedRom's latency is at least {self.MIN_LATENCY}, not {latency}")
        self.shape, self.words, self.latency = Shape.cast(shape), list(words), latency
        self.bank_depth = bank_depth or block_ram_depth(self.shape.width)
        if self.shape.width % parts:
            raise ValueError(f"a {self.shape.width}-bit word does not split into {parts} equal parts")
        self.parts = parts
        super().__init__({"addr": In(range(max(2, len(self.words)))), "data": Out(shape)})

    @property
    def banks(self):
        return ceil_div(max(1, len(self.words)), self.bank_depth)

    def elaborate(self, platform):
        m = Module()
        depth, banks = self.bank_depth, self.banks
        addr = delay(m, self.addr, 1, "addr")
        words = []
        for k in range(banks):
            init = self.words[k * depth:(k + 1) * depth]
            # A power-of-two depth: the bank's address is the low bits of `addr`, no bound check.
            rom = memory.Memory(shape=self.shape, depth=1 << ceil_log2(max(2, len(init))),
                                init=init, attrs={"rom_style": "block"})
            m.submodules[f"bank{k}"] = rom
            port = rom.read_port()
            m.d.comb += [port.addr.eq(addr), port.en.eq(1)]
            words.append(delay(m, port.data, 1, f"bank{k}_word"))
        if banks == 1:
            chosen = words[0]
        else:
            size = self.shape.width // self.parts
            selects = delay_copies(m, addr[ceil_log2(depth):], 2, self.parts, "select")
            chosen = Cat(*[Array([w[k * size:(k + 1) * size] for w in words])[select]
                           for k, select in enumerate(selects)])
        m.d.sync += self.data.eq(delay(m, chosen, self.latency - self.MIN_LATENCY, "out"))
        return m
