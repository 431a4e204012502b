"""`python -m bench._child MODULE:FUNC KWARGS_JSON OUT_JSON`: one isolated measurement.

Used by `bench.common.run_isolated` so that each preset / size gets a fresh process (its own
peak RSS, a cold torch). Logs go to stderr; the result dict goes to OUT_JSON.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path


def main() -> int:
    target, kwargs, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from bench.common import set_threads

    set_threads()
    module, _, func = target.partition(":")
    result = getattr(importlib.import_module(module), func)(**kwargs)
    out.write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
