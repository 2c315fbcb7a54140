import logging
import os
import sys

# This process does no linear algebra: OpenBLAS's thread pool, started when pandas imports
# numpy, only spins (~0.1 CPU-s of every run, measured). Set before anything imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .cli import main  # noqa: E402 (after the environment it must see)

code = main()
# Everything the command wrote is closed (results and tickets renamed into place, the store
# closed): skip the interpreter's module teardown (pandas, DuckDB, GE), ~0.1 s of every run.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
