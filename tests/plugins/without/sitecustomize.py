"""Makes the top-level modules named in $EDGE_TEST_WITHOUT (comma-separated) absent from a Python
process started with this directory on PYTHONPATH (tests/plugins/helpers.python_env).

A module mapped to None in sys.modules cannot be imported (ImportError), nor its submodules, and
importlib.util.find_spec answers None for it: to the process it is not installed. The site module
imports this file before any other code runs, so `python -m edge.cli` sees the installation
without those modules, as a venv built without the extras would be (which would need the network).
"""

import os
import sys

for _name in filter(None, os.environ.get("EDGE_TEST_WITHOUT", "").split(",")):
    sys.modules[_name.strip()] = None  # type: ignore[assignment]
