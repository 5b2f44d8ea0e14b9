"""Barcode scanning on simulated frames and real photos: both decoders, regions, retries and positions."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drivers.camera import IMAGE_SUFFIXES, load_image
from edge import barcodes
from edge.barcodes import Decoder, Reading, ZbarBackend, ZxingBackend
from edge.imageprep import FrameFormatError
from edge.scanner import STILL_IMAGE, DecodeOptions, Fallback, FrameScanner, decode_image
from edge.symbology import ALL_SYMBOLOGIES, QR_ONLY, Symbology
from tests.conftest import shared_dir
from tests.hw_sim.camera import SCENES, Scene, health_card_tokens, render_qr_frame

TOKEN = health_card_tokens(1, seed=42)[0]
SHARED = shared_dir() / "testdata"
QR_DATA = SHARED / "qr"


def _decode(frame: np.ndarray, **options: object) -> list[barcodes.DecodedCode]:
    return FrameScanner(DecodeOptions(**options)).decode(frame)  # type: ignore[arg-type]


def _blind_zxing(monkeypatch: pytest.MonkeyPatch, candidates: bool = False) -> None:
    """zxing-cpp finds nothing (optionally: locates the whole frame as an undecodable symbol)."""
    def read(self, gray, symbologies, **kw):  # type: ignore[no-untyped-def]
        h, w = gray.shape
        return Reading(candidates=[barcodes.Box(w // 4, h // 4, 3 * w // 4, 3 * h // 4)] if candidates else [])
    monkeypatch.setattr(ZxingBackend, "read", read)


# -- simulated frames ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("scene", SCENES.values(), ids=SCENES.keys())
@pytest.mark.parametrize("grayscale", [False, True], ids=["bgr", "gray"])
def test_decodes_simulated_scenes(scene: Scene, grayscale: bool) -> None:
    frame = render_qr_frame(TOKEN, scene, rng=np.random.default_rng(1), grayscale=grayscale)
    codes = _decode(frame)
    assert [c.text for c in codes] == [TOKEN]
    code = codes[0]
    assert code.format is Symbology.QR and code.raw == TOKEN.encode() and code.decoder is Decoder.ZXING
    assert abs(code.center.x - (320 + scene.dx)) < 15 and abs(code.center.y - (240 + scene.dy)) < 15


@pytest.mark.parametrize("symbology, text", [("Code128", "TUBE-000123"), ("Code39", "TUBE123"),
                                             ("EAN13", "6901234567892")])
@pytest.mark.parametrize("angle", [0, 90, 180])
def test_decodes_tube_barcodes(symbology: str, text: str, angle: float) -> None:
    frame = render_qr_frame(text, Scene(size=200, angle=angle, noise=4), symbology=symbology,
                            rng=np.random.default_rng(2))
    codes = _decode(frame)
    assert [(c.text, c.format.value) for c in codes] == [(text, symbology)]
    assert abs(codes[0].center.x - 320) < 40 and abs(codes[0].center.y - 240) < 40


def test_symbologies_not_asked_for_are_not_reported() -> None:
    frame = render_qr_frame("TUBE-000123", Scene(size=200), symbology="Code128", rng=np.random.default_rng(2))
    assert _decode(frame, symbologies=QR_ONLY) == []


def test_corners_follow_rotation() -> None:
    frame = render_qr_frame(TOKEN, Scene(size=200, angle=90), rng=np.random.default_rng(1))
    (code,) = _decode(frame)
    tl, tr, br, bl = code.corners
    # rotated 90 degrees counter-clockwise: the symbol's top edge now runs upwards on the left
    assert tl.x < 320 and tr.x < 320 and tl.y > tr.y
    assert br.x > 320 and bl.x > 320


def test_empty_frames_yield_nothing() -> None:
    assert _decode(render_qr_frame(None, Scene(noise=6), rng=np.random.default_rng(2))) == []
    assert _decode(np.zeros((10, 10), dtype=np.uint8)) == []


def test_several_codes_in_one_frame_with_positions() -> None:
    a, b = health_card_tokens(2, seed=3)
    left = render_qr_frame(a, Scene(size=200), width=320, height=480, rng=np.random.default_rng(1))
    mid = render_qr_frame("TUBE-778899", Scene(size=200, angle=90), width=320, height=480, symbology="Code128",
                          rng=np.random.default_rng(3))
    right = render_qr_frame(b, Scene(size=200), width=320, height=480, rng=np.random.default_rng(2))
    codes = _decode(np.hstack([left, mid, right]))
    by_text = {c.text: c for c in codes}
    assert set(by_text) == {a, b, "TUBE-778899"}
    assert by_text[a].center.x < 320 < by_text["TUBE-778899"].center.x < 640 < by_text[b].center.x


def test_rejects_frames_of_wrong_type() -> None:
    with pytest.raises(FrameFormatError):
        _decode(np.zeros((48, 64), dtype=np.float32))
    with pytest.raises(FrameFormatError):
        _decode(np.zeros((48, 64, 4), dtype=np.uint8))
    frame = render_qr_frame(TOKEN, rng=np.random.default_rng(1), grayscale=True)[:, :, None]
    assert [c.text for c in _decode(frame)] == [TOKEN]


def test_1080p_frames_are_searched_reduced_and_small_codes_at_full_resolution() -> None:
    big = render_qr_frame(TOKEN, Scene(size=400, noise=4), width=1920, height=1080, rng=np.random.default_rng(3))
    scanner = FrameScanner()
    (code,) = scanner.decode(big)
    assert abs(code.center.x - 960) < 20 and abs(code.center.y - 540) < 20  # mapped back to full-frame pixels
    assert scanner.stats.full_res_reads == 0
    # a code held far away is too small to be seen in the reduced frame: a full-resolution pass finds it
    small = render_qr_frame(TOKEN, Scene(size=90, noise=4), width=1920, height=1080, rng=np.random.default_rng(3))
    scanner = FrameScanner(DecodeOptions(track=False, full_res_every=1))
    assert [c.text for c in scanner.decode(small)] == [TOKEN]
    assert scanner.stats.full_res_reads == 1


def test_region_tracking_reads_held_code_in_its_region_and_still_finds_new_ones() -> None:
    a, b = health_card_tokens(2, seed=8)
    scanner = FrameScanner(DecodeOptions(full_scan_every=4))
    rng = np.random.default_rng(4)
    held = [render_qr_frame(a, Scene(size=220, dx=-150, noise=4), rng=rng) for _ in range(6)]
    assert all([c.text for c in scanner.decode(f)] == [a] for f in held)
    assert scanner.stats.roi_reads >= 4, scanner.stats  # most frames answered by the region alone
    # a second code appears on the other side while the first is still held
    left = render_qr_frame(a, Scene(size=200), width=320, height=480, rng=rng)
    right = render_qr_frame(b, Scene(size=200), width=320, height=480, rng=rng)
    seen: set[str] = set()
    for _ in range(4):
        seen |= {c.text for c in scanner.decode(np.hstack([left, right]))}
    assert seen == {a, b}
    # the person leaves: the region is dropped after a few empty frames and full scans resume
    for _ in range(4):
        assert scanner.decode(render_qr_frame(None, rng=rng)) == []
    assert not scanner._tracks


def test_zbar_reads_when_zxing_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    _blind_zxing(monkeypatch)
    frame = render_qr_frame(TOKEN, SCENES["tilted"], rng=np.random.default_rng(1))
    assert _decode(frame, fallback=Fallback.NEVER) == []
    assert _decode(frame, fallback=Fallback.ON_CANDIDATE) == []  # nothing located: zbar not asked
    (code,) = _decode(frame, fallback=Fallback.ALWAYS)
    assert code.decoder is Decoder.ZBAR and code.text == TOKEN and code.format is Symbology.QR
    assert abs(code.center.x - 320) < 15 and abs(code.center.y - 240) < 15
    pts = code.corners  # clockwise on screen: positive shoelace area with y pointing down
    assert sum(pts[i].x * pts[(i + 1) % 4].y - pts[(i + 1) % 4].x * pts[i].y for i in range(4)) > 0


def test_located_symbols_are_retried_then_given_to_zbar(monkeypatch: pytest.MonkeyPatch) -> None:
    _blind_zxing(monkeypatch, candidates=True)
    frame = render_qr_frame(TOKEN, Scene(size=200), rng=np.random.default_rng(1))
    scanner = FrameScanner(DecodeOptions(fallback=Fallback.ON_CANDIDATE))
    (code,) = scanner.decode(frame)
    assert code.decoder is Decoder.ZBAR and scanner.stats.zbar_reads == 1
    assert abs(code.center.x - 320) < 15 and abs(code.center.y - 240) < 15  # crop offset mapped back


def test_zbar_missing_reads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    _blind_zxing(monkeypatch)
    monkeypatch.setattr(ZbarBackend, "_load", classmethod(lambda cls: None))
    assert not ZbarBackend().available
    assert _decode(render_qr_frame(TOKEN, rng=np.random.default_rng(1)), fallback=Fallback.ALWAYS) == []


def test_decoded_code_repr_hides_text() -> None:
    (code,) = _decode(render_qr_frame(TOKEN, rng=np.random.default_rng(1)))
    assert TOKEN not in repr(code)
    assert code.as_json()["text"] == TOKEN and len(code.as_json()["position"]) == 4


# -- real photos (../shared/testdata) ---------------------------------------------------------------------

def _samples(folder: str) -> list[Path]:
    path = QR_DATA / folder
    if not path.is_dir():
        pytest.skip(f"shared QR samples not found: {path} (set EHC_SHARED_DIR)")
    return [p for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]


def _expected(image: Path) -> bytes | None:
    for suffix in (".txt", ".bin"):
        if image.with_suffix(suffix).exists():
            return image.with_suffix(suffix).read_bytes()
    return None


def test_shared_qr_photos_at_least_95_percent() -> None:
    images = [p for n in range(1, 7) for p in _samples(f"qrcode-{n}")]
    assert len(images) > 100
    scanner = FrameScanner(STILL_IMAGE)
    missed = []
    for image in images:
        expected = _expected(image)
        codes = scanner.decode(load_image(image))
        if not any(c.raw == expected or c.text.encode() == expected for c in codes):
            missed.append(f"{image.parent.name}/{image.name}")
    # measured: 131 of 137 (95.6 %); the six misses are codes printed on cloth curved over a surface
    assert (len(images) - len(missed)) / len(images) >= 0.95, missed
    assert scanner.stats.second_pass_reads >= 2  # decorated codes only the retries read


def test_second_pass_reads_what_the_first_cannot() -> None:
    (image,) = [p for p in _samples("qrcode-2") if p.name == "12.webp"]
    frame = load_image(image)
    assert decode_image(frame, DecodeOptions(track=False, second_pass=False, fallback=Fallback.NEVER)) == []
    (code,) = decode_image(frame)
    assert code.text.encode() == _expected(image)


def test_shared_false_positives_yield_nothing() -> None:
    images = _samples("falsepositives-1")
    assert images
    found = {p.name: len(decode_image(load_image(p))) for p in images}
    assert not any(found.values()), f"codes found in images without any: {found}"


def test_every_valid_dcc_conformance_image_decodes() -> None:
    raw = sorted((SHARED / "dcc").glob("*/2DCode/raw/*.json"))
    if not raw:
        pytest.skip(f"shared DCC test data not found: {SHARED / 'dcc'} (set EHC_SHARED_DIR)")
    from pyzbar import pyzbar

    checked, differ = 0, []
    for case in raw:
        data = json.loads(case.read_text(encoding="utf-8"))
        if not data.get("2DCODE") or data.get("EXPECTEDRESULTS", {}).get("EXPECTEDPICTUREDECODE") is False:
            continue
        gray = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["2DCODE"]))).convert("L"))
        codes = FrameScanner(DecodeOptions(symbologies=QR_ONLY, track=False)).decode(gray)
        assert len(codes) == 1 and codes[0].text.startswith("HC1:"), case
        checked += 1
        if codes[0].text != data["PREFIX"]:
            # upstream's ES 501-503 images hold other certificates than their PREFIX: zbar must agree with us
            (other,) = pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE])
            assert other.data.decode() == codes[0].text, case
            differ.append(f"{case.parts[-4]}/{case.stem}")
    assert checked >= 110
    assert differ == ["ES/501", "ES/502", "ES/503"]


def test_all_symbologies_by_default() -> None:
    assert DecodeOptions().symbologies == ALL_SYMBOLOGIES
    with pytest.raises(ValueError):
        DecodeOptions(symbologies=frozenset())
