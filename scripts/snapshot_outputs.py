"""Render every output format of compare, a layered sweep and a matrix on sample_data into a folder.

Run it before and after a refactor and diff the folders: a structural change must leave every file
byte-identical (JSON with its timing fields removed). Usage: python scripts/snapshot_outputs.py OUTDIR
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

S = "sample_data"
RUNS = {
    "compare": [f"{S}/minilm.npy", f"{S}/tfidf.npy", "--seed", "7", "-B", "200"],
    "compare_all": [f"{S}/minilm.npy", f"{S}/tfidf.npy", "--seed", "7", "-B", "200", "-m", "mknn,cka,cka-unbiased",
                    "-P", "50", "--explain"],
    "sweep": [f"{S}/embeddings.h5:minilm/layers", f"{S}/tfidf.npy", "--seed", "3", "-B", "100", "-P", "20"],
    "matrix": ["matrix", f"{S}/minilm.npy", f"{S}/tfidf.npy", f"{S}/embeddings.h5:tfidf/final", "--seed", "5",
               "-B", "100"],
}
TIMING = ("timing", "seconds", "elapsed")


def _strip(doc):
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in TIMING}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, args in RUNS.items():
        cmd = args if args[0] == "matrix" else ["compare", *args]
        for fmt in ("table", "json", "csv", "markdown"):
            proc = subprocess.run([sys.executable, "-m", "repalign", *cmd, "-f", fmt], capture_output=True,
                                  text=True, env={"COLUMNS": "120", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
            text = proc.stdout
            if fmt == "json" and proc.returncode in (0, 1):
                text = json.dumps(_strip(json.loads(text)), indent=2, sort_keys=True)
            (out / f"{name}.{fmt}").write_text(f"exit {proc.returncode}\n{text}\n--- stderr\n{proc.stderr}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
