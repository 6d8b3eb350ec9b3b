"""``python -m sirlocal.emulator``."""

import sys

from sirlocal.emulator.process import main

if __name__ == "__main__":
    main(sys.argv[1:])
