#!/usr/bin/env python3
"""OCR of medical reports: generated pages of every layout family read by the box, against the ground truth.

``--n`` pages per family (tests/hw_sim/reports.py :data:`FAMILIES`: ruled, plain and bilingual tables,
twin and triple tables, row numbers, merged value+range cells, dotted leaders, stamps, circled items and
two-line names, faint thermal print, ultrasound reports as measurement lines and as prose, discharge
records, lists with leaders of every mark), photographed as a scan, a phone photo or a hard phone photo
(perspective, curl, shadow, blur) in turn. The five :data:`HELD_OUT` families were never used to tune the structuring; they are reported
apart from the tuned ones. ``--families`` reads only the named ones (to tune on the tuned families alone).

Engines (``--engine``):

* ``ppocr``: the box's reader: page correction → PP-OCR text lines (edge/reports/textlines.py) → layout
  from line geometry → catalogue-anchored structuring. ``auto`` (default) uses it when installed;
* ``truth``: the generator's ground-truth text lines (with ``--noise``: jittered boxes, detector-joined
  neighbouring cells, look-alike Chinese characters, residual skew) → the same layout and structuring.
  It measures the structuring alone, when no recogniser is installed.

Peers in the same run, on the same pages: the same lines given to a naive row parser (a row's first line
names an item by the catalogue's exact match, the first number after it is the value), and today's
Tesseract reader (``ReportReader(engine="tesseract")`` + the header-driven structuring) on the photo,
every ``--tesseract-every``-th page.

Figures, per family and for tuned / held-out families: item precision, recall and F1 (a text item such as a
discharge diagnosis counts once per printed line), exact values (of the items found, the printed value read
character for character; for text items the text), flags (of the exact values whose truth prints a
range, the share whose flag H / L / N is the truth's), the share of items marked for a person to check;
per-stage seconds (page correction, detection, recognition, structuring; process CPU time, one thread),
s/page median and p95, and the peak resident memory of the process after the engine's pages (pages are
photographed in a helper process, so it is the reader's; before the peers load), with large blocks
returned to the system on free as the station daemon has them (foundation/heap.py; ``--default-heap``: the
C library's defaults).

Last line: ``ocr: engine=E held_out f1=… values=… flags=… | tuned f1=… values=… flags=… | s_per_page=… peak_mb=…``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import re
import resource
import statistics
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)

from edge.reports.capture import CaptureRejected, correct_page  # noqa: E402
from edge.reports.catalogue import Catalogue, load_catalogue  # noqa: E402
from edge.reports.page import TextLine  # noqa: E402
from edge.reports.reader import ReportReader, page_from_lines  # noqa: E402
from edge.reports.structure import structure  # noqa: E402
from foundation.heap import return_large_blocks  # noqa: E402
from tests.hw_sim.reports import (  # noqa: E402
    DEGRADATIONS,
    FAMILIES,
    FRAME_SIZE,
    HELD_OUT,
    ReportPage,
    make_family,
    photograph,
    truth_lines,
)

NUMBER = re.compile(r"[<>≤≥]?\d+(?:\.\d+)?")
MULTI = ("11535-2",)  # discharge diagnoses: one item per printed line


def squash(text: object) -> str:
    return "".join(str(text).split()).replace("：", ":")


@dataclass
class Tally:
    """Item-level counts of one reader over some pages."""

    truth: int = 0
    reported: int = 0
    hits: int = 0
    exact: int = 0
    flag_n: int = 0
    flag_ok: int = 0
    review: int = 0
    rejected: int = 0
    pages: int = 0
    secs: list[float] = field(default_factory=list)
    misses: Counter = field(default_factory=Counter)

    def add(self, o: Tally) -> None:
        for name in ("truth", "reported", "hits", "exact", "flag_n", "flag_ok", "review", "rejected", "pages"):
            setattr(self, name, getattr(self, name) + getattr(o, name))
        self.secs += o.secs
        self.misses.update(o.misses)

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
    def values(self) -> float:
        return self.exact / self.hits if self.hits else 0.0

    @property
    def flags(self) -> float:
        return self.flag_ok / self.flag_n if self.flag_n else 1.0


def truth_items(page: ReportPage, cat: Catalogue) -> dict[tuple[str, str], Any]:
    """The page's printed items keyed by (code, text for multi-line items), the code by the catalogue's
    match of the canonical name the generator printed (or its abbreviation)."""
    out = {}
    for item in page.items:
        m = cat.match(item.name) or cat.match(item.abbr)
        if m is None:
            continue
        out[(m.item.code, squash(item.value) if m.item.code in MULTI else "")] = item
    return out


def score(page: ReportPage, items: list[dict] | None, cat: Catalogue, secs: float) -> Tally:
    """``items``: dicts with code, value, printed value, flag and review (as ``Item.to_json`` gives)."""
    t = Tally(pages=1, secs=[secs])
    truth = truth_items(page, cat)
    t.truth = len(truth)
    tag = f"{page.layout}/{page.degradation or 'lines'}"
    if items is None:
        t.rejected = 1
        t.misses[f"{tag}:rejected"] += len(truth)
        return t
    seen = set()
    for item in items:
        key = (item["code"], squash(item["value"]) if item["code"] in MULTI else "")
        if key in seen:
            continue
        seen.add(key)
        t.reported += 1
        t.review += bool(item.get("review"))
        want = truth.get(key)
        if want is None:
            t.misses[f"{tag}:extra {item['code']}"] += 1
            continue
        t.hits += 1
        printed = item["printed"]["value"] or ""
        if want.type == "text":
            ok = squash(printed) == squash(want.value)
        else:
            m = NUMBER.search(printed)
            ok = bool(m) and m.group(0) == want.value
        if not ok:
            t.misses[f"{tag}:value"] += 1
            continue
        t.exact += 1
        if want.ref:
            t.flag_n += 1
            good = (item["flag"] or "N") == (want.flag or "N")
            t.flag_ok += good
            if not good:
                t.misses[f"{tag}:flag"] += 1
    for key, want in truth.items():
        if key not in seen:
            t.misses[f"{tag}:missed {want.name}"] += 1
    return t


# ------------------------------------------------------------------------------------------------ peers

_FLAGS = {"↑": "H", "↓": "L", "H": "H", "L": "L"}


def naive_rows(lines: list[TextLine], cat: Catalogue) -> list[dict]:
    """The naive row parser: lines in rows by vertical overlap; a row's first line, matched exactly by the
    catalogue, names the item; the first number after it is the value, an arrow or H/L its flag."""
    rows: list[list[TextLine]] = []
    for ln in sorted(lines, key=lambda ln: ln.box.y + ln.box.h / 2):
        for row in rows[-3:]:
            a = row[0].box
            if min(a.y + a.h, ln.box.y + ln.box.h) - max(a.y, ln.box.y) > 0.5 * min(a.h, ln.box.h):
                row.append(ln)
                break
        else:
            rows.append([ln])
    out = []
    for row in rows:
        row.sort(key=lambda ln: ln.box.x)
        m = cat.match(row[0].text)
        if m is None or m.method != "exact":
            continue
        rest = " ".join(ln.text for ln in row[1:])
        num = NUMBER.search(rest)
        if num is None:
            continue
        flag = next((_FLAGS[ch] for ch in rest[num.end():num.end() + 3] if ch in _FLAGS), "N")
        out.append({"code": m.item.code, "value": num.group(0), "printed": {"value": num.group(0)}, "flag": flag,
                    "review": False})
    return out


# ------------------------------------------------------------------------------------------------ run

def photographed(family: str, seed: int, degradation: str) -> tuple[ReportPage, bytes]:
    """A page of ``family`` photographed, its frame as PNG bytes (made in a helper process)."""
    page = photograph(make_family(seed, family), degradation)
    ok, buf = cv2.imencode(".png", page.frame)  # lossless: the frame is already the camera's JPEG
    page.frame, page.image = None, None  # type: ignore[assignment]
    return page, bytes(buf)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def engine_of(name: str) -> Any:
    if name in ("auto", "ppocr"):
        try:
            from edge.reports.textlines import PpOcrLines

            return PpOcrLines(threads=threadcap.THREADS)
        except (ImportError, RuntimeError) as exc:
            if name == "ppocr":
                raise
            print(f"PP-OCR text lines unavailable ({type(exc).__name__}: {exc}); engine: ground-truth lines")
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6, help="pages per family")
    ap.add_argument("--seed", type=int, default=7000)
    ap.add_argument("--engine", choices=("auto", "ppocr", "truth"), default="auto")
    ap.add_argument("--noise", type=float, default=1.0, help="noise of the ground-truth lines (engine truth)")
    ap.add_argument("--tesseract-every", type=int, default=3, help="read every k-th page with Tesseract too; 0: none")
    ap.add_argument("--verbose", action="store_true", help="where items were lost (tuned families only)")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated families (default: all)")
    ap.add_argument("--default-heap", action="store_true",
                    help="keep the C library's heap defaults (the station daemon returns large blocks on free)")
    args = ap.parse_args()
    if not args.default_heap:
        return_large_blocks()
    cv2.setNumThreads(threadcap.THREADS)
    cat = load_catalogue()
    print(f"machine: {platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}, opencv "
          f"{cv2.__version__}; frames {FRAME_SIZE[0]}x{FRAME_SIZE[1]} JPEG; load average {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    rec = engine_of(args.engine)
    engine = "ppocr" if rec is not None else f"truth-lines(noise {args.noise:g})"
    print(f"engine {engine}, loaded in {(time.perf_counter() - t0) * 1000:.0f} ms; held out: {', '.join(HELD_OUT)}")

    families = tuple(f for f in FAMILIES if f in args.families.split(","))
    unknown = set(args.families.split(",")) - set(FAMILIES)
    if unknown or not families:
        ap.error(f"unknown families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    plan = [(f, args.seed + i) for f in families for i in range(args.n)]
    ours: dict[str, Tally] = defaultdict(Tally)
    naive: dict[str, Tally] = defaultdict(Tally)
    stages: dict[str, list[float]] = defaultdict(list)
    per_page: list[float] = []
    maker = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) if rec is not None else None
    for n, (family, seed) in enumerate(plan):
        deg = DEGRADATIONS[n % len(DEGRADATIONS)]
        if maker is not None:  # photographed in a helper process: the peak memory here is the reader's
            page, png = maker.submit(photographed, family, seed, deg).result()
            page.frame = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        else:
            page = make_family(seed, family)
        c0 = time.process_time()
        if rec is not None:
            try:
                captured = correct_page(page.frame)
            except CaptureRejected:
                ours[page.layout].add(score(page, None, cat, time.process_time() - c0))
                continue
            c1 = time.process_time()
            lines = rec.read_lines(captured.image)
            width, height = captured.image.shape[1], captured.image.shape[0]
            stages["page"].append(c1 - c0)
            stages["detection"].append(rec.times.detect)
            stages["recognition"].append(rec.times.recognise + getattr(rec.times, "classify", 0.0))
        else:
            lines = truth_lines(page, skew_deg=((n % 5) - 2) * 0.5, seed=args.seed + n, noise=args.noise)
            width, height = 1240, 1754
        s0 = time.process_time()
        report = structure(page_from_lines(lines, width, height, catalogue=cat)).to_json(personal=False)
        s1 = time.process_time()
        stages["structuring"].append(s1 - s0)
        per_page.append(s1 - c0)
        ours[page.layout].add(score(page, report["items"], cat, s1 - c0))
        n0 = time.process_time()
        naive[page.layout].add(score(page, naive_rows(lines, cat), cat, time.process_time() - n0))
    peak = peak_mb()
    if maker is not None:
        maker.shutdown()

    tess: dict[str, Tally] = defaultdict(Tally)
    if args.tesseract_every:
        reader = ReportReader(engine="tesseract")
        for n, (family, seed) in enumerate(plan):
            if n % args.tesseract_every:
                continue
            page = photograph(make_family(seed, family), DEGRADATIONS[n % len(DEGRADATIONS)])
            c0 = time.process_time()
            try:
                items = structure(reader.read(page.frame).text).to_json(personal=False)["items"]
            except CaptureRejected:
                items = None
            tess[page.layout].add(score(page, items, cat, time.process_time() - c0))
        reader.close()

    def total(d: dict[str, Tally], fams: tuple[str, ...]) -> Tally:
        t = Tally()
        for f in fams:
            if f in d:
                t.add(d[f])
        return t

    tuned = tuple(f for f in families if f not in HELD_OUT)
    held_out = tuple(f for f in families if f in HELD_OUT)
    print(f"\n{len(plan)} pages ({args.n} per family), degradations {'/'.join(DEGRADATIONS)} in turn")
    print(f"  {'family':18} {'':4} {'items':>5} {'prec':>6} {'recall':>6} {'F1':>6} {'values':>7} {'flags':>6} "
          f"{'check':>6} | {'naive F1':>8} {'values':>6} | {'tess F1':>7} {'values':>6}")
    for f in families:
        t, nv, ts = ours[f], naive[f], tess.get(f)
        mark = "HELD" if f in HELD_OUT else ""
        tess_txt = f"{ts.f1:7.3f} {ts.values:6.3f}" if ts and ts.pages else f"{'-':>7} {'-':>6}"
        print(f"  {f:18} {mark:4} {t.truth:5} {t.precision:6.3f} {t.recall:6.3f} {t.f1:6.3f} {t.values:7.3f} "
              f"{t.flags:6.3f} {t.review / max(1, t.reported):6.3f} | {nv.f1:8.3f} {nv.values:6.3f} | {tess_txt}")
    summary = {}
    for label, fams in (("tuned", tuned), ("held-out", held_out)):
        if not fams:
            continue
        t, nv, ts = total(ours, fams), total(naive, fams), total(tess, fams)
        summary[label] = t
        print(f"  {label:18} {'':4} {t.truth:5} {t.precision:6.3f} {t.recall:6.3f} {t.f1:6.3f} {t.values:7.3f} "
              f"{t.flags:6.3f} {t.review / max(1, t.reported):6.3f} | {nv.f1:8.3f} {nv.values:6.3f} | "
              f"{ts.f1:7.3f} {ts.values:6.3f}")
    print("  check: share of the reported items marked for a person to check; naive: the same lines, naive row "
          "parser; tess: today's Tesseract reader on the photo (every "
          f"{args.tesseract_every}-th page: {sum(t.pages for t in tess.values())} pages)")
    print("\nper-stage CPU seconds per page (median / p95):")
    for name in ("page", "detection", "recognition", "structuring"):
        xs = sorted(stages.get(name, []))
        if xs:
            print(f"  {name:12} {statistics.median(xs):.3f} / {xs[int(0.95 * (len(xs) - 1))]:.3f}")
        else:
            print(f"  {name:12} -  (no recogniser in this run)")
    med = statistics.median(per_page) if per_page else 0.0
    print(f"  s/page: median {med:.3f}, p95 {sorted(per_page)[int(0.95 * (len(per_page) - 1))]:.3f}; "
          f"peak resident memory {peak:.0f} MB after the engine's pages")
    tess_all = total(tess, families)
    if tess_all.secs:
        print(f"  Tesseract reader: {statistics.median(tess_all.secs):.2f} s/page median (CPU)")
    if args.verbose:
        losses = Counter({k: v for f in tuned for k, v in ours[f].misses.items()})
        print("\nlosses (tuned families):", dict(losses.most_common(40)))
    def figures(label: str) -> str:
        t = summary.get(label)
        return "-" if t is None else f"f1={t.f1:.3f} values={t.values:.3f} flags={t.flags:.3f}"

    print(f"ocr: engine={engine.split('(')[0]} held_out {figures('held-out')} | tuned {figures('tuned')} | "
          f"s_per_page={med:.2f} peak_mb={peak:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
