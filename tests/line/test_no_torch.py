"""The line scorer must run where torch cannot be imported (the line PC has none)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.line.conftest import LINE, Golden

# Any attempt to import torch (or a torch sub-module) raises and is written down.
_BLOCK_TORCH = """
import sys
attempts = []
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            attempts.append(name)
            raise ImportError("torch is blocked on the line PC")
        return None
sys.meta_path.insert(0, NoTorch())
sys.modules.pop("torch", None)
import prefilter_qa_line, prefilter_qa_line.cli, prefilter_qa_line.watch
from prefilter_qa_line.cli import main
rc = main(sys.argv[1:])
assert "torch" not in sys.modules, "torch was imported"
print("TORCH_ATTEMPTS=" + ",".join(attempts), file=sys.stderr)
sys.exit(rc)
"""


def test_cli_scores_without_torch(bundle_dir: Path, golden: Golden, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(LINE))
    proc = subprocess.run([sys.executable, "-c", _BLOCK_TORCH, "score", str(bundle_dir),
                           str(golden.files[0][0]), str(golden.files[2][0]),
                           "--heatmaps", str(tmp_path / "maps")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(x)["verdict"] for x in proc.stdout.splitlines()] == ["OK", "NOK"]
    assert "TORCH_ATTEMPTS=\n" in proc.stderr  # nobody even tried (onnxruntime included)


def test_import_does_not_load_torch() -> None:
    code = ("import sys, prefilter_qa_line, prefilter_qa_line.cli, prefilter_qa_line.backends; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(LINE)), timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
