"""`python -m hw.client`: the host client (hw/host/client.py), at the name its docs give.

It imports no HDL: the laptop that talks to the board needs neither Amaranth nor the core."""
import sys

from hw.host.client import main

if __name__ == "__main__":
    sys.exit(main())
