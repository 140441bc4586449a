"""Reading a SentencePiece model file: hubloader's own protobuf reader
(``hubloader.text.vocab.read_sentencepiece_model``) against the ``sentencepiece`` package's own
protobuf classes (``sentencepiece.sentencepiece_model_pb2``, which need ``protobuf``), the peer
a user would pick.

The file is real-sized: a tiny trained Unigram model whose vocabulary is grown to 32,000
pieces (T5's spiece.model size) through the pb2 classes, so both readers parse the same bytes.
Each measurement is a fresh interpreter (import + parse + the pieces as Python tuples),
interleaved, medians reported.

    python benchmarks/sentencepiece_reader.py [--runs 11]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

# hubloader itself is imported in both: a load has it already
OURS = """
import time, sys, hubloader.errors
t0 = time.perf_counter()
from hubloader.text.vocab import read_sentencepiece_model
t1 = time.perf_counter()
spm = read_sentencepiece_model(__import__('pathlib').Path(sys.argv[1]))
pieces = spm["pieces"]
t2 = time.perf_counter()
print(__import__('json').dumps({"import": t1 - t0, "parse": t2 - t1, "n": len(pieces)}))
"""

PEER = """
import time, sys, hubloader.errors
t0 = time.perf_counter()
from sentencepiece import sentencepiece_model_pb2 as pb
t1 = time.perf_counter()
m = pb.ModelProto()
m.ParseFromString(open(sys.argv[1], 'rb').read())
pieces = [(p.piece, p.score, p.type) for p in m.pieces]
spec = (m.trainer_spec.model_type, m.trainer_spec.byte_fallback,
        m.normalizer_spec.precompiled_charsmap, m.normalizer_spec.add_dummy_prefix)
t2 = time.perf_counter()
print(__import__('json').dumps({"import": t1 - t0, "parse": t2 - t1, "n": len(pieces)}))
"""


def make_model(path: Path, size: int = 32000) -> Path:
    from _flagai import write_sentencepiece
    from sentencepiece import sentencepiece_model_pb2 as pb

    write_sentencepiece(path)
    m = pb.ModelProto()
    m.ParseFromString(path.read_bytes())
    rng = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyz北京上海天气"
    seen = {p.piece for p in m.pieces}
    while len(m.pieces) < size:
        text = "\u2581" + "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 9)))
        if text not in seen:
            seen.add(text)
            m.pieces.add(piece=text, score=-rng.random() * 20, type=1)
    path.write_bytes(m.SerializeToString())
    return path


def run(code: str, model: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=11)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = make_model(Path(tmp) / "spiece.model")
        size = model.stat().st_size
        ours, peer = [], []
        for _ in range(args.runs):  # interleaved: the machine's load hits both alike
            ours.append(run(OURS, model))
            peer.append(run(PEER, model))
    assert ours[0]["n"] == peer[0]["n"]
    for name, rows in (("hubloader reader", ours), ("sentencepiece pb2", peer)):
        imp = statistics.median(r["import"] for r in rows) * 1e3
        parse = statistics.median(r["parse"] for r in rows) * 1e3
        print(f"{name:18s} pieces {rows[0]['n']}, file {size / 1e3:.0f} kB: import "
              f"{imp:.1f} ms, parse {parse:.1f} ms, total {imp + parse:.1f} ms "
              f"(median of {len(rows)})")


if __name__ == "__main__":
    main()
