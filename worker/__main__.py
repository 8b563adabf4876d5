"""``python -I -m worker CONFIG_JSON``: a worker started as its own program."""

import json
import sys

from worker.start import run

if __name__ == "__main__":
    run(json.loads(sys.argv[1]))
