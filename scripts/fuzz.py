#!/usr/bin/env python
"""Fuzz harness for the tflrnn command line: see scripts/fuzzing/__init__.py for what it does and how to run it.

    python scripts/fuzz.py --cases 300 --seed 0        # the quick run tests/test_fuzz.py does
    python scripts/fuzz.py --long --seed 2 --save-failures /tmp/found --json /tmp/long.json
    python scripts/fuzz.py --replay tests/fuzz_corpus  # re-run the regression corpus
"""

import sys

from fuzzing import main  # scripts/, this file's directory, is on sys.path when it runs

if __name__ == "__main__":
    sys.exit(main())
