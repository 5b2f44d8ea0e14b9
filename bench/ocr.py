#!/usr/bin/env python3
"""OCR of medical reports: generated report photos read by the box's pipeline, against the ground truth.

``--n`` pages (tests/hw_sim/reports.py) cycling through every layout (ruled table, plain table,
two-column table, ultrasound report) and degradation (scan, photo, hard), Noto / WenQuanYi fonts, about
a quarter of the values abnormal. Each page is read as ``ehc-edge ocr`` does: capture → OCR → layout
(edge/reports/reader.py) → structuring (edge/reports/structure.py). The printed items are mapped to
LOINC codes with the catalogue's exact name match, then:

* item precision and recall: reported codes that are on the page / codes on the page that were reported;
* exact values: of the items found, the share whose printed value was read character for character;
* flags (``flag_acc``): of the *correctly read* items that print a reference range, the share whose flag
  (H / L / N) is the truth's. An item is read correctly when everything its flag is computed from was read
  right: the value character for character, the reference range (its numbers, as printed) and the unit
  (the structured value in the item's canonical unit is the truth's; a misspelt unit the structuring still
  understood is no error). A flag computed from a misread range is a reading error, not a flag error;
* flags over all exact values (``flag_acc_all``, column ``flags*``): the same share over every item whose
  value was read exactly, misread range or unit included;
* seconds per page: CPU time of this single thread (``time.process_time``; OpenCV limited to one thread,
  Tesseract's wheel has no OpenMP) for reading and structuring; wall time is shown beside it, since the
  machine may be shared.

The peer measured in the same run (``--baseline``, every 4th page by default): plain tesserocr on the
uncorrected photo, ``PSM.AUTO`` (3), chi_sim+eng, its text lines given to the same structuring stage.

Last line: ``ocr: item_f1=X value_acc=Y flag_acc=Z flag_acc_all=W s_per_page=S``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)

import cv2  # noqa: E402

from edge.reports.capture import CaptureRejected  # noqa: E402
from edge.reports.catalogue import load_catalogue  # noqa: E402
from edge.reports.ocr import LANGUAGES, report_tessdata  # noqa: E402
from edge.reports.page import Box, Line, PageText  # noqa: E402
from edge.reports.reader import ReportReader  # noqa: E402
from edge.reports.structure import structure  # noqa: E402
from edge.reports.values import UnitError, norm_unit, to_canonical  # noqa: E402
from tests.hw_sim.reports import DEGRADATIONS, LAYOUTS, FRAME_SIZE, ReportPage, sample_reports  # noqa: E402

NUMBER = re.compile(r"[<>≤≥]?\d+(?:\.\d+)?")


@dataclass
class Tally:
    """Item-level counts of one reader over some pages."""

    truth: int = 0
    reported: int = 0
    hits: int = 0
    exact: int = 0
    flag_n: int = 0
    flag_ok: int = 0
    flag_n_all: int = 0
    flag_ok_all: int = 0
    misread_ref: int = 0
    rejected: int = 0
    pages: int = 0
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    misses: Counter = field(default_factory=Counter)

    def add(self, other: "Tally") -> None:
        for name in ("truth", "reported", "hits", "exact", "flag_n", "flag_ok", "flag_n_all", "flag_ok_all",
                     "misread_ref", "rejected", "pages"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cpu += other.cpu
        self.wall += other.wall
        self.misses.update(other.misses)

    @property
    def precision(self) -> float:
        return self.hits / self.reported if self.reported else 0.0

    @property
    def recall(self) -> float:
        return self.hits / self.truth if self.truth else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def value_acc(self) -> float:
        return self.exact / self.hits if self.hits else 0.0

    @property
    def flag_acc(self) -> float:
        return self.flag_ok / self.flag_n if self.flag_n else 0.0

    @property
    def flag_acc_all(self) -> float:
        return self.flag_ok_all / self.flag_n_all if self.flag_n_all else 0.0


def truth_codes(page: ReportPage, cat) -> tuple[dict[str, object], int]:  # noqa: ANN001
    """The page's printed items by LOINC code (catalogue exact match on the printed name), and how many
    printed items the catalogue does not know."""
    out = {}
    unknown = 0
    for item in page.items:
        m = cat.match(item.name) or cat.match(item.abbr)
        if m is None or m.item.code in out:
            unknown += 1
            continue
        out[m.item.code] = item
    return out, unknown


def read_correctly(item: dict, want, cat) -> bool:  # noqa: ANN001 - a TruthItem, the catalogue
    """Whether everything the flag is computed from was read right: the value (checked by the caller), the
    reference range (its numbers, as printed) and the unit (the item's value in its canonical unit is the
    truth's: a misspelt unit that the structuring still understood does not count against it)."""
    got_ref = NUMBER.findall(((item.get("ref") or {}).get("text")) or "")
    if [n.lstrip("<>≤≥") for n in got_ref] != [n.lstrip("<>≤≥") for n in NUMBER.findall(want.ref)]:
        return False
    m = cat.match(want.name) or cat.match(want.abbr)
    try:
        number, unit, _ = to_canonical(float(want.value.lstrip("<>≤≥")), norm_unit(want.unit), m.item)
    except (UnitError, ValueError, AttributeError):
        return False
    return item["unit"] == unit and isinstance(item["value"], (int, float)) \
        and abs(item["value"] - number) <= 1e-6 * max(1.0, abs(number))


def score(page: ReportPage, report_json: dict | None, cat, cpu: float, wall: float) -> Tally:  # noqa: ANN001
    t = Tally(pages=1, cpu=[cpu], wall=[wall])
    truth, _ = truth_codes(page, cat)
    t.truth = len(truth)
    if report_json is None:
        t.rejected = 1
        t.misses.update(f"{page.layout}/{page.degradation}:rejected" for _ in truth)
        return t
    seen = set()
    for item in report_json["items"]:
        code = item["code"]
        if code in seen:
            continue
        seen.add(code)
        t.reported += 1
        if code not in truth:
            t.misses[f"{page.layout}/{page.degradation}:extra"] += 1
            continue
        t.hits += 1
        want = truth[code]
        printed = NUMBER.search(item["printed"]["value"] or "")
        if printed and printed.group(0) == want.value:
            t.exact += 1
            if want.ref:
                flag_ok = (item["flag"] or "N") == (want.flag or "N")
                t.flag_n_all += 1
                t.flag_ok_all += flag_ok
                if read_correctly(item, want, cat):
                    t.flag_n += 1
                    t.flag_ok += flag_ok
                    if not flag_ok:
                        t.misses[f"{page.layout}/{page.degradation}:flag"] += 1
                else:
                    t.misread_ref += 1
                    if not flag_ok:
                        t.misses[f"{page.layout}/{page.degradation}:flag_after_misread_range_or_unit"] += 1
        else:
            t.misses[f"{page.layout}/{page.degradation}:value"] += 1
    t.misses.update(f"{page.layout}/{page.degradation}:missed" for code in truth if code not in seen)
    return t


class PlainTesseract:
    """The peer: one tesserocr instance, PSM 3 on the uncorrected grey photo, text lines as free lines."""

    def __init__(self) -> None:
        import tesserocr

        self.tess = tesserocr
        self.api = tesserocr.PyTessBaseAPI(path=str(report_tessdata()) + os.sep, lang=LANGUAGES,
                                           psm=tesserocr.PSM.AUTO, oem=tesserocr.OEM.LSTM_ONLY)

    def read(self, frame) -> PageText:  # noqa: ANN001
        from PIL import Image

        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        self.api.SetImage(Image.fromarray(gray))
        self.api.Recognize()
        lines = []
        it = self.api.GetIterator()
        level = self.tess.RIL.TEXTLINE
        while it is not None and not it.Empty(level):
            text = it.GetUTF8Text(level)
            box = it.BoundingBox(level)
            if text and text.strip() and box:
                lines.append(Line(text.strip(), float(it.Confidence(level)),
                                  Box(box[0], box[1], box[2] - box[0], box[3] - box[1])))
            if not it.Next(level):
                break
        return PageText(tuple(lines), (), gray.shape[1], gray.shape[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=120, help="pages (at least 100 for the recorded figures)")
    ap.add_argument("--seed", type=int, default=7000)
    ap.add_argument("--baseline-every", type=int, default=4, help="read every k-th page with the peer too; 0: none")
    ap.add_argument("--verbose", action="store_true", help="list where items were lost")
    args = ap.parse_args()
    cv2.setNumThreads(threadcap.THREADS)
    print(f"machine: {platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}, "
          f"tesserocr {version('tesserocr')} (Tesseract {__import__('tesserocr').tesseract_version().split()[1]}), "
          f"opencv {cv2.__version__}, numpy {version('numpy')}; frames {FRAME_SIZE[0]}x{FRAME_SIZE[1]} JPEG; "
          f"load average {os.getloadavg()[0]:.1f}")
    cat = load_catalogue()
    started = time.perf_counter()
    reader = ReportReader()
    print(f"reader loaded in {(time.perf_counter() - started) * 1000:.0f} ms (one Tesseract instance, reused)")
    peer = PlainTesseract() if args.baseline_every else None
    ours, by = Tally(), defaultdict(Tally)
    theirs, ours_same = Tally(), Tally()
    unknown = 0
    for i, page in enumerate(sample_reports(args.n, seed=args.seed)):
        unknown += truth_codes(page, cat)[1]
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            read = reader.read(page.frame)
            result = structure(read.text).to_json(personal=False)
        except CaptureRejected:
            result = None
        t = score(page, result, cat, time.process_time() - c0, time.perf_counter() - w0)
        ours.add(t)
        by[(page.layout, page.degradation)].add(t)
        if peer is not None and i % args.baseline_every == 0:
            c0, w0 = time.process_time(), time.perf_counter()
            theirs_json = structure(peer.read(page.frame)).to_json(personal=False)
            theirs.add(score(page, theirs_json, cat, time.process_time() - c0, time.perf_counter() - w0))
            ours_same.add(t)
    print(f"\n{ours.pages} pages, {ours.truth} printed items with a catalogue code ({unknown} not in the catalogue), "
          f"{ours.rejected} pages rejected by capture")
    print(f"  {'layout/degradation':22} {'items':>5} {'prec':>6} {'recall':>6} {'values':>7} {'flags':>7} "
          f"{'flags*':>7} {'cpu s':>6} {'wall s':>6}")
    for lay in LAYOUTS:
        for deg in DEGRADATIONS:
            t = by.get((lay, deg))
            if t is None:
                continue
            flags = f"{t.flag_acc:7.3f}" if t.flag_n else f"{'-':>7}"  # ultrasound: no printed range
            flags_all = f"{t.flag_acc_all:7.3f}" if t.flag_n_all else f"{'-':>7}"
            print(f"  {lay + '/' + deg:22} {t.truth:5} {t.precision:6.3f} {t.recall:6.3f} {t.value_acc:7.3f} "
                  f"{flags} {flags_all} {statistics.mean(t.cpu):6.2f} {statistics.mean(t.wall):6.2f}")
    print(f"  {'all':22} {ours.truth:5} {ours.precision:6.3f} {ours.recall:6.3f} {ours.value_acc:7.3f} "
          f"{ours.flag_acc:7.3f} {ours.flag_acc_all:7.3f} {statistics.mean(ours.cpu):6.2f} "
          f"{statistics.mean(ours.wall):6.2f}")
    print(f"  flags: over the {ours.flag_n} correctly read items with a printed range (value, range and unit "
          f"read right); flags*: over all {ours.flag_n_all} items whose value was read exactly "
          f"({ours.misread_ref} of them with a misread range or unit)")
    print(f"  cpu s/page: median {statistics.median(ours.cpu):.2f}, p95 "
          f"{sorted(ours.cpu)[int(0.95 * (len(ours.cpu) - 1))]:.2f}, max {max(ours.cpu):.2f}")
    if peer is not None and theirs.pages:
        print(f"\npeer on the same {theirs.pages} pages: plain tesserocr, PSM 3, uncorrected photo, same structuring")
        for name, t in (("pipeline", ours_same), ("plain PSM 3", theirs)):
            print(f"  {name:12} item F1 {t.f1:.3f} (P {t.precision:.3f} R {t.recall:.3f})  values {t.value_acc:.3f}  "
                  f"flags {t.flag_acc:.3f}  cpu {statistics.mean(t.cpu):.2f} s/page")
        if theirs.f1:
            print(f"  ratio pipeline / peer: item F1 x{ours_same.f1 / theirs.f1:.2f}, exact items "
                  f"x{ours_same.exact / max(1, theirs.exact):.2f}, cpu x"
                  f"{statistics.mean(ours_same.cpu) / statistics.mean(theirs.cpu):.2f}")
    if args.verbose:
        print("\nlosses:", dict(ours.misses.most_common()))
    print(f"ocr: item_f1={ours.f1:.3f} value_acc={ours.value_acc:.3f} flag_acc={ours.flag_acc:.3f} "
          f"flag_acc_all={ours.flag_acc_all:.3f} s_per_page={statistics.mean(ours.cpu):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
