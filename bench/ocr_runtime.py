#!/usr/bin/env python3
"""Text-line reading of report pages (edge/reports/textlines.py) per runtime and per model variant.

``--n`` generated pages (tests/hw_sim/reports.py: every layout × scan / photo / hard) are photographed,
corrected by the capture (edge/reports/capture.py, its time is the ``page`` stage) and saved; then each
configuration reads the same corrected pages **in its own process** (so that its peak memory is its
own), single-threaded unless said otherwise:

* ``ort``: what the box runs — ONNX Runtime, detector float32, recogniser int8 MatMul/Gemm weights,
  classifier float32, detector input 960 on the longer side;
* ``ort-default-heap``: the same, with the C library's default heap settings (every other configuration
  has large blocks returned to the system when freed, as the station daemon does: foundation/heap.py);
  ``ort-det-whole``: the detector run on the whole page at once instead of bands of
  :data:`~edge.reports.textlines.DET_BAND` rows;
* ``ort-rec-fp32``: the recogniser in float32; ``ort-int8-conv``: detector and recogniser with int8
  convolutions too (``ConvInteger``, on ``--slow-pages`` pages only); ``ort-det1280``: the detector at
  1280; ``ort-2threads``: two intra-op threads; ``ort-dewarp``: the pages captured with ``straighten=True``
  (curled text lines straightened: only pages where the capture finds a bend differ);
* ``cv2-dnn``: the same pipeline on OpenCV's DNN module (``cv2.dnn.readNetFromONNX``; it cannot load the
  int8 recogniser — no ``DynamicQuantizeLinear`` — so it runs the float32 one).

The variants need ``models_tflite/convert_ppocr.py --variants DIR`` (default ``/tmp/ppocr-variants``);
configurations whose files are missing are skipped and said so. LiteRT is not measured: the PP-OCR
models would need an ONNX → TensorFlow → TFLite conversion (onnx2tf) first.

Accuracy, against the generator's ground truth: every printed field (item name, abbreviation where
printed, value, unit, reference range, ultrasound narrative line). ``fields``: the share found character for character
inside one read line (spaces, full-width punctuation and ``×``/``x`` taken as one); ``chars``: the
share of a field's characters matched in its best line (difflib), averaged over fields.

Last line: ``ocr_runtime: ort_s_per_page=… ort_fields=… ort_chars=… ort_rss_mb=… cv2dnn_s_per_page=…
cv2dnn_fields=… cv2dnn_over_ort=…``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import threadcap  # noqa: E402,F401  (--threads N, default 1: per-core figures)

from foundation.heap import return_large_blocks  # noqa: E402

CONFIGS = ("ort", "ort-default-heap", "ort-det-whole", "ort-rec-fp32", "ort-int8-conv", "ort-det1280", "ort-2threads",
           "ort-dewarp", "cv2-dnn")
NEEDS = {"ort-rec-fp32": ("ppocr_rec_v4_mobile_fp32.onnx",), "cv2-dnn": ("ppocr_rec_v4_mobile_fp32.onnx",),
         "ort-int8-conv": ("ppocr_det_v4_mobile_int8.onnx", "ppocr_rec_v4_mobile_int8.onnx")}


def _norm(text: str) -> str:
    t = "".join(text.split())
    for a, b in (("：", ":"), ("（", "("), ("）", ")"), ("，", ","), ("×", "x"), ("～", "~"), ("。", "")):
        t = t.replace(a, b)
    return t


# -- the worker: one configuration in its own process --------------------------------------------------------

class CvDnnSession:
    """An OpenCV DNN network behind the few ONNX Runtime session calls :class:`PpOcrLines` makes (names,
    shapes and metadata copied from the ONNX Runtime session of the same model, which is then dropped)."""

    def __init__(self, path: Path, like: Any) -> None:
        import cv2

        self.net = cv2.dnn.readNetFromONNX(str(path))
        self.inputs = [SimpleNamespace(name=i.name, shape=i.shape) for i in like.get_inputs()]
        self.outputs = [SimpleNamespace(name=o.name, shape=o.shape) for o in like.get_outputs()]
        self.meta = SimpleNamespace(custom_metadata_map=dict(like.get_modelmeta().custom_metadata_map))

    def get_inputs(self) -> list:
        return self.inputs

    def get_outputs(self) -> list:
        return self.outputs

    def get_modelmeta(self) -> Any:
        return self.meta

    def run(self, _names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.net.setInput(next(iter(feeds.values())))
        return [self.net.forward()]


def worker(config: str, folder: Path, variants: Path, pages: int) -> dict:
    """Read the saved pages with ``config``; per page times and texts, peak memory."""
    import cv2

    from edge.reports import textlines

    if config != "ort-default-heap":
        return_large_blocks()  # as the station daemon does
    threads = 2 if config == "ort-2threads" else 1
    cv2.setNumThreads(threads)
    t0 = time.perf_counter()
    reader = textlines.PpOcrLines(threads=threads, det_side=1280 if config == "ort-det1280" else textlines.DET_SIDE,
                                  det_band=0 if config == "ort-det-whole" else textlines.DET_BAND)
    if config == "ort-rec-fp32":
        reader.rec = textlines.session_for(variants / "ppocr_rec_v4_mobile_fp32.onnx", threads)
    elif config == "ort-int8-conv":
        reader.det = textlines.session_for(variants / "ppocr_det_v4_mobile_int8.onnx", threads)
        reader.rec = textlines.session_for(variants / "ppocr_rec_v4_mobile_int8.onnx", threads)
    elif config == "cv2-dnn":
        from models_tflite.loader import verified_path

        reader.det = CvDnnSession(verified_path(textlines.DET_MODEL), reader.det)
        reader.cls = CvDnnSession(verified_path(textlines.CLS_MODEL), reader.cls)
        reader.rec = CvDnnSession(variants / "ppocr_rec_v4_mobile_fp32.onnx", reader.rec)
        import gc

        gc.collect()
    load = time.perf_counter() - t0
    out = []
    names = sorted(p.name for p in folder.glob("*.png") if not p.name.endswith(".dewarp.png"))[:pages]
    for name in names:
        alt = folder / name.replace(".png", ".dewarp.png")
        path = alt if config == "ort-dewarp" and alt.exists() else folder / name
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        t = time.perf_counter()
        lines = reader.read_lines(image)
        total = time.perf_counter() - t
        tm = reader.times
        out.append({"page": name, "total": total, "detect": tm.detect, "classify": tm.classify,
                    "recognise": tm.recognise, "texts": [ln.text for ln in lines],
                    "conf": [ln.conf for ln in lines]})
    return {"config": config, "load": load, "pages": out, "rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started (``VmHWM``; ``ru_maxrss`` would carry the
    parent's peak across the exec)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the driver ------------------------------------------------------------------------------------------------

def render(folder: Path, n: int, seed: int) -> tuple[dict[str, list[str]], list[float]]:
    """Photograph, correct and save ``n`` pages; their truth fields by file name and the capture times."""
    import cv2

    from edge.reports import capture
    from tests.hw_sim import reports as sim

    truth: dict[str, list[str]] = {}
    times = []
    for i, page in enumerate(sim.sample_reports(n, seed=seed)):
        t = time.perf_counter()
        captured = capture.correct_page(page.frame)
        times.append(time.perf_counter() - t)
        name = f"{i:03d}-{page.layout}-{page.degradation}.png"
        cv2.imwrite(str(folder / name), captured.image)
        straight = capture.correct_page(page.frame, straighten=True)
        if any(note.startswith("curl") for note in straight.notes):
            cv2.imwrite(str(folder / name.replace(".png", ".dewarp.png")), straight.image)
        fields = []
        for it in page.items:  # side-by-side tables print no abbreviation
            fields += [it.name, it.value, it.unit] + ([it.abbr] if page.layout != "two_column" else []) \
                + ([it.ref] if it.ref else [])
        truth[name] = [f for f in (_norm(x) for x in fields + page.narrative) if f]
    return truth, times


def score(result: dict, truth: dict[str, list[str]]) -> tuple[float, float]:
    """Share of fields read exactly inside one line, mean share of each field's characters matched."""
    exact = total = 0
    chars = []
    for page in result["pages"]:
        texts = [_norm(t) for t in page["texts"]]
        for field in truth[page["page"]]:
            total += 1
            exact += any(field in t for t in texts)
            best = 0
            for t in texts:
                sm = difflib.SequenceMatcher(None, field, t, autojunk=False)
                best = max(best, sum(b.size for b in sm.get_matching_blocks()))
            chars.append(best / len(field))
    return exact / max(1, total), statistics.mean(chars) if chars else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="PP-OCR text lines per runtime and model variant")
    ap.add_argument("--n", type=int, default=12, help="pages (default 12: every layout and degradation once)")
    ap.add_argument("--seed", type=int, default=500)
    ap.add_argument("--variants", type=Path, default=Path(tempfile.gettempdir()) / "ppocr-variants")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--slow-pages", type=int, default=3, help="pages for ort-int8-conv (about 5x slower)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--pages", type=int, default=10 ** 6, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.dir, args.variants, args.pages)))
        return 0

    import cv2
    import onnxruntime

    cv2.setNumThreads(1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; onnxruntime "
          f"{onnxruntime.__version__}, OpenCV {cv2.__version__}, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        truth, capture_s = render(folder, args.n, args.seed)
        curled = len(list(folder.glob("*.dewarp.png")))
        print(f"{len(truth)} pages, {sum(len(v) for v in truth.values())} printed fields; capture (page stage) "
              f"median {statistics.median(capture_s):.2f} s; {curled} page(s) with a bend to straighten")
        results = {}
        for config in args.configs.split(","):
            missing = [f for f in NEEDS.get(config, ()) if not (args.variants / f).exists()]
            if missing:
                print(f"  {config}: skipped, {', '.join(missing)} not in {args.variants} "
                      "(models_tflite/convert_ppocr.py --variants)")
                continue
            pages = args.slow_pages if config == "ort-int8-conv" else args.n
            cmd = [sys.executable, __file__, "--worker", config, "--dir", str(folder), "--variants",
                   str(args.variants), "--pages", str(pages)]
            run = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if run.returncode:
                print(f"  {config}: failed: {run.stderr.strip().splitlines()[-1:]}")
                continue
            results[config] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"\n{'config':14} {'pages':>5} {'fields':>7} {'chars':>7} {'s/page':>7} {'detect':>7} {'classify':>8} "
              f"{'recog':>7} {'lines':>6} {'peakMB':>7} {'load s':>7}")
        summary: dict[str, dict[str, float]] = {}
        for config, res in results.items():
            pages = res["pages"]
            fields, chars = score(res, truth)
            med = {k: statistics.median(p[k] for p in pages) for k in ("total", "detect", "classify", "recognise")}
            lines = statistics.mean(len(p["texts"]) for p in pages)
            summary[config] = {"s": med["total"], "fields": fields, "chars": chars, "rss": res["rss_mb"]}
            print(f"{config:14} {len(pages):5} {fields:7.3f} {chars:7.3f} {med['total']:7.2f} {med['detect']:7.2f} "
                  f"{med['classify']:8.3f} {med['recognise']:7.2f} {lines:6.0f} {res['rss_mb']:7.0f} {res['load']:7.2f}")
        print("(s/page and stages: medians of wall time per page, single process; the machine is shared, see load)")
    ort = summary.get("ort", {})
    cvd = summary.get("cv2-dnn", {})
    ratio = cvd["s"] / ort["s"] if ort and cvd else float("nan")
    print(f"ocr_runtime: ort_s_per_page={ort.get('s', float('nan')):.2f} ort_fields={ort.get('fields', 0):.3f} "
          f"ort_chars={ort.get('chars', 0):.3f} ort_rss_mb={ort.get('rss', 0):.0f} "
          f"cv2dnn_s_per_page={cvd.get('s', float('nan')):.2f} cv2dnn_fields={cvd.get('fields', 0):.3f} "
          f"cv2dnn_over_ort={ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
