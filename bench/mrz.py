#!/usr/bin/env python3
"""MRZ benchmark: the camera reader with the MRZ model and with the ``eng`` fallback, same frames, one run.

``--n`` synthetic documents (TD1 ID cards and TD3 passports in turn; ``--td2`` adds TD2) with made-up,
valid zones, filmed as the box's camera would (tests/hw_sim/documents.py: tilt up to 5 degrees, slight
perspective, blur, uneven light, noise, JPEG), 1280x960. For each model: the share read fully valid
(every check digit and the composite), the share read exactly as printed (names included), valid reads
that differ from the print (split into fields a check digit covers and fields none does: names, states,
sex), and median / p95 ms per frame. Then frames without a zone (empty desk, document fronts): the share
for which the reader rightly reports nothing.

Last line: ``mrz: valid=R ms_median=M`` (R: fully valid share with mrz.traineddata, M: its median ms).
Runs on one thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import numpy as np  # noqa: E402
import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)

from edge.documents.mrz import MrzFormat, MrzResult, parse_mrz  # noqa: E402
from edge.documents.mrz_ocr import MrzReader, MrzSettings  # noqa: E402
from tests.hw_sim.documents import SampleDocument, frames_without_mrz, sample_documents  # noqa: E402


@dataclass
class Tally:
    """One model's outcomes."""

    n: int = 0
    valid: int = 0
    exact: int = 0
    wrong_checked: int = 0      # valid, but a field a check digit covers differs from the print
    wrong_unchecked: int = 0    # valid, covered fields right, a name / state / sex differs
    none: int = 0
    ms: list[float] = field(default_factory=list)
    by_format: dict[str, list[int]] = field(default_factory=dict)

    def add(self, doc: SampleDocument, result: MrzResult | None, ms: float) -> None:
        self.n += 1
        self.ms.append(ms)
        counts = self.by_format.setdefault(doc.format.value, [0, 0])
        counts[1] += 1
        if result is None:
            self.none += 1
            return
        if not result.valid:
            return
        self.valid += 1
        counts[0] += 1
        if result.lines == doc.lines:
            self.exact += 1
        elif _checked(result) != _checked(parse_mrz(doc.lines)):
            self.wrong_checked += 1
        else:
            self.wrong_unchecked += 1


def _checked(r: MrzResult) -> tuple:
    return r.document_number, r.birth_date, r.expiry_date, r.optional_data, r.optional_data_2


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q * 100)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("EHC_SHARED_DIR", str(Path(__file__).resolve().parents[2] /
                                                                              "shared")),
                    help="shared folder holding models/tessdata/mrz.traineddata")
    ap.add_argument("--n", type=int, default=240, help="documents")
    ap.add_argument("--blank", type=int, default=40, help="frames without a zone")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--td2", action="store_true", help="also TD2 documents (TD1, TD3, TD2 in turn)")
    ap.add_argument("--level", choices=("camera", "easy"), default="camera")
    args = ap.parse_args()

    tessdata = Path(args.shared) / "models" / "tessdata"
    if not (tessdata / "mrz.traineddata").is_file():
        print(f"no mrz.traineddata in {tessdata}: pass --shared or set EHC_SHARED_DIR", file=sys.stderr)
        return 2
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpu, "
          f"Python {platform.python_version()}, tesserocr {version('tesserocr')}, numpy {version('numpy')}, "
          f"Pillow {version('pillow')}")
    formats = (MrzFormat.TD1, MrzFormat.TD3) + ((MrzFormat.TD2,) if args.td2 else ())
    readers: dict[str, MrzReader] = {}
    with tempfile.TemporaryDirectory() as cache:
        for name, settings in (("mrz", MrzSettings(tessdata=str(tessdata), cache_dir=cache)), ("eng", MrzSettings())):
            started = time.perf_counter()
            readers[name] = MrzReader(settings)
            print(f"model {name}: {readers[name].model!r}, loaded in {(time.perf_counter() - started) * 1000:.0f} ms")
        tallies = {name: Tally() for name in readers}
        render_ms: list[float] = []
        started = time.perf_counter()
        docs = sample_documents(args.n, seed=args.seed, formats=formats, level=args.level)
        while True:
            t0 = time.perf_counter()
            doc = next(docs, None)
            if doc is None:
                break
            render_ms.append((time.perf_counter() - t0) * 1000)
            for name, reader in readers.items():
                t0 = time.perf_counter()
                result = reader.read(doc.frame)
                tallies[name].add(doc, result, (time.perf_counter() - t0) * 1000)
        print(f"\n{args.n} documents ({'/'.join(f.value for f in formats)}, {args.level} capture, 1280x960 BGR), "
              f"rendered in {statistics.median(render_ms):.0f} ms each; {time.perf_counter() - started:.0f} s in all")
        print(f"  {'model':6} {'valid':>14} {'exact':>14} {'valid, wrong':>22} {'nothing':>8} "
              f"{'median ms':>10} {'p95 ms':>8}  by format (valid)")
        for name, t in tallies.items():
            formats_cell = " ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(t.by_format.items()))
            print(f"  {name:6} {t.valid:>4}/{t.n} {t.valid / t.n:6.1%} {t.exact:>4}/{t.n} {t.exact / t.n:6.1%} "
                  f"{t.wrong_checked:>4} checked {t.wrong_unchecked:>3} names {t.none:>8} "
                  f"{statistics.median(t.ms):>10.0f} {pct(t.ms, 0.95):>8.0f}  {formats_cell}")
        print("  (valid, wrong: read with every check digit right but unlike the print; 'checked' counts errors "
              "in a field a check digit covers, 'names' errors only in names, states or sex)")

        print(f"\n{args.blank} frames without a zone (empty desk, card and passport fronts)")
        blanks = list(frames_without_mrz(args.blank, seed=args.seed))
        for name, reader in readers.items():
            ms, nothing = [], 0
            for frame in blanks:
                t0 = time.perf_counter()
                nothing += reader.read(frame) is None
                ms.append((time.perf_counter() - t0) * 1000)
            print(f"  {name:6} nothing reported {nothing}/{len(blanks)}  median {statistics.median(ms):.0f} ms  "
                  f"p95 {pct(ms, 0.95):.0f} ms")
        for reader in readers.values():
            reader.close()
    t = tallies["mrz"]
    print(f"mrz: valid={t.valid / t.n:.3f} ms_median={statistics.median(t.ms):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
