"""The commands a technician runs first, each checked against the shared data's own ground truth.

    python scripts/arm64_smoke.py {face,decode,verify,ocr} [--shared DIR] [--cli PATH]

Run by ``scripts/arm64-check.sh`` inside an emulated arm64 tree after ``scripts/install.sh``: ``face``
compares two photos of one person and two of different people (``labels.csv``), ``decode`` reads a QR photo
(its ``.txt`` beside it), ``verify`` checks an EU DCC conformance case at its validation clock with its
signing certificate, ``ocr`` reads a generated report page (needs the test extras for the page generator).
Prints one line per check; exit 1 at the first wrong answer.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _cli(cli: str, *args: str) -> tuple[int, str]:
    done = subprocess.run([cli, *args], capture_output=True, text=True, timeout=900)
    if done.returncode not in (0, 1):
        sys.stderr.write(done.stderr[-4000:])
    return done.returncode, done.stdout


def _fail(msg: str) -> int:
    print(f"smoke: FAIL {msg}")
    return 1


def face(shared: Path, cli: str) -> int:
    """``ehc-edge face compare`` on two same-person and two different-person photos."""
    faces = shared / "testdata" / "faces"
    with (faces / "labels.csv").open(encoding="utf-8") as f:
        label = {row["file"]: row["identities"] for row in csv.DictReader(f)}
    for a, b in (("obama.jpg", "obama2.jpg"), ("obama.jpg", "biden.jpg")):
        rc, out = _cli(cli, "face", "compare", str(faces / a), str(faces / b))
        if rc != 0 or not out.strip():
            return _fail(f"face compare {a} {b}: exit {rc}")
        verdict = json.loads(out)
        expected = label[a] == label[b]
        print(f"smoke: face compare {a} {b}: same={verdict['same']} score={verdict['score']:.4f}")
        if verdict["same"] is not expected:
            return _fail(f"face compare {a} {b}: same={verdict['same']}, labels say {expected}")
    return 0


def decode(shared: Path, cli: str) -> int:
    """``ehc-edge decode`` on a QR photo whose text is in the ``.txt`` beside it."""
    folder = shared / "testdata" / "qr" / "qrcode-2"
    image = next(p for p in sorted(folder.iterdir()) if p.suffix in (".png", ".jpg") and p.with_suffix(".txt").exists())
    expected = image.with_suffix(".txt").read_text(encoding="utf-8")
    rc, out = _cli(cli, "decode", str(image))
    texts = [c.get("text") for line in out.splitlines() if line.strip() for c in json.loads(line).get("codes", [])]
    print(f"smoke: decode {image.name}: {len(texts)} code(s)")
    if rc != 0 or expected not in texts:
        return _fail(f"decode {image.name}: expected text not among {len(texts)} decoded (exit {rc})")
    return 0


def verify(shared: Path, cli: str) -> int:
    """``ehc-edge verify`` on an EU DCC case, with its certificate and at its validation clock."""
    case = json.loads((shared / "testdata" / "dcc" / "CH" / "2DCode" / "raw" / "1.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        cert = Path(tmp) / "signer.der"
        cert.write_bytes(base64.b64decode(case["TESTCTX"]["CERTIFICATE"]))
        rc, out = _cli(cli, "verify", "--trust-cert", str(cert), "--schemas", str(shared / "testdata" / "dcc" / "schemas"),
                       "--at", case["TESTCTX"]["VALIDATIONCLOCK"], case["PREFIX"])
    verdict = json.loads(out) if out.strip() else {}
    print(f"smoke: verify CH/1: valid={verdict.get('valid')} format={verdict.get('format')}")
    if rc != 0 or verdict.get("valid") is not True or verdict.get("checks", {}).get("signature") is not True:
        return _fail(f"verify CH/1: exit {rc}, {verdict.get('reason')}")
    return 0


def ocr(shared: Path, cli: str) -> int:
    """``ehc-edge ocr`` on a generated lab report page: most printed values read back."""
    sys.path.insert(0, str(REPO))
    from tests.hw_sim.reports import make_report

    page = make_report(5, "ruled")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "page.png"
        page.image.save(path)
        rc, out = _cli(cli, "ocr", str(path))
    report = json.loads(out) if out.strip() else {}
    read = [str((i.get("printed") or {}).get("value")) for i in report.get("items", [])]
    truth = [t.value for t in page.items]
    hits = sum(min(read.count(v), truth.count(v)) for v in set(truth))
    print(f"smoke: ocr ruled page: {hits}/{len(truth)} printed values read")
    if rc != 0 or hits < 0.8 * len(truth):
        return _fail(f"ocr: {hits}/{len(truth)} values read (exit {rc}, {report.get('error')})")
    return 0


def main() -> int:
    """Run one smoke check; exit status 0 when its answer matches the ground truth."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("check", choices=("face", "decode", "verify", "ocr"))
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("EHC_SHARED_DIR", REPO.parent / "shared")))
    p.add_argument("--cli", default=str(Path(sys.executable).parent / "ehc-edge"))
    args = p.parse_args()
    return {"face": face, "decode": decode, "verify": verify, "ocr": ocr}[args.check](args.shared, args.cli)


if __name__ == "__main__":
    sys.exit(main())
