"""``python -I -m worker CONFIG_JSON``: a worker started as its own program."""

import sys

from worker.start import main

if __name__ == "__main__":
    main(sys.argv[1])
