"""Capture of report photos (edge/reports/capture.py) on generated pages (tests/hw_sim/reports.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from edge.reports.capture import (
    CaptureRejected,
    NoText,
    PageCut,
    TooBlurred,
    TooDark,
    correct_page,
    dewarp,
    find_page,
    order_corners,
    sharpness,
    skew_angle,
    to_gray,
)
from tests.hw_sim.reports import available_fonts, blurred, darkened, make_report, photograph

pytestmark = pytest.mark.skipif(not available_fonts(), reason="no CJK fonts installed (fonts-noto-cjk, fonts-wqy-*)")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    out = {}
    for degradation, seed in (("scan", 3), ("photo", 5), ("hard", 9)):
        page = photograph(make_report(seed, "ruled"), degradation)
        out[degradation] = page
    return out


def test_order_corners() -> None:
    pts = np.float32([[90, 5], [100, 200], [0, 190], [3, 0]])
    assert order_corners(pts).tolist() == [[3, 0], [90, 5], [100, 200], [0, 190]]


@pytest.mark.parametrize("degradation", ["photo", "hard"])
def test_page_corners_found_within_one_percent(photos: dict, degradation: str) -> None:
    page = photos[degradation]
    found = find_page(to_gray(page.frame))
    assert found is not None
    h, w = page.frame.shape[:2]
    error = np.abs(found - page.corners).max()
    assert error < 0.01 * max(h, w), (found, page.corners)


def test_scan_without_desk_is_taken_whole(photos: dict) -> None:
    captured = correct_page(photos["scan"].frame)
    assert captured.corners is None
    assert "page edges not found: whole frame used" in captured.notes


def test_corrected_page_is_level_flat_and_page_shaped(photos: dict) -> None:
    captured = correct_page(photos["hard"].frame)
    img = captured.image
    h, w = img.shape
    assert 1100 <= w <= 1600
    assert abs(h / w - 1754 / 1240) < 0.06  # A4 proportions back after the perspective
    assert abs(skew_angle(img)) <= 0.3
    # the shadow is gone: the paper is about as bright in every quarter of the page
    quarters = [img[y:y + h // 2, x:x + w // 2] for y in (0, h // 2) for x in (0, w // 2)]
    paper = [float(np.percentile(q, 75)) for q in quarters]
    assert min(paper) > 235, paper
    # and the ink stays dark
    assert float(np.percentile(img, 1)) < 80


def test_skew_is_measured_and_removed() -> None:
    page = np.asarray(make_report(4, "plain").image)
    h, w = page.shape
    for angle in (2.5, -1.5):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        rotated = cv2.warpAffine(page, m, (w, h), borderValue=255)
        assert skew_angle(rotated) == pytest.approx(-angle, abs=0.2)
        frame = cv2.cvtColor(rotated, cv2.COLOR_GRAY2BGR)
        captured = correct_page(frame)
        assert abs(skew_angle(captured.image)) <= 0.2


def test_sharpness_falls_with_blur(photos: dict) -> None:
    page = correct_page(photos["photo"].frame).image
    crisp = sharpness(page)
    soft = sharpness(cv2.GaussianBlur(page, (0, 0), 2.5))
    assert crisp > 0.7
    assert soft < 0.6 < crisp


@pytest.mark.parametrize("sigma", [5.0, 8.0])
def test_blurred_frame_is_rejected_with_an_instruction(photos: dict, sigma: float) -> None:
    with pytest.raises(TooBlurred) as caught:
        correct_page(blurred(photos["photo"].frame, sigma))
    assert caught.value.reason == "too_blurred"
    assert "对焦" in caught.value.instruction and "hold" in caught.value.instruction
    assert caught.value.instruction in str(caught.value)


def test_dark_frame_is_rejected_with_an_instruction(photos: dict) -> None:
    with pytest.raises(TooDark) as caught:
        correct_page(darkened(photos["photo"].frame))
    assert caught.value.reason == "too_dark"
    assert "光线" in caught.value.instruction and "brighter" in caught.value.instruction


@pytest.mark.parametrize("frame", [np.full((900, 700, 3), 200, np.uint8),
                                   np.random.default_rng(1).integers(120, 136, (900, 700), dtype=np.uint8),
                                   np.zeros((100, 80, 3), np.uint8)])
def test_frame_without_print_is_rejected(frame: np.ndarray) -> None:
    with pytest.raises(NoText) as caught:
        correct_page(frame)
    assert isinstance(caught.value, CaptureRejected)
    assert "report" in caught.value.instruction


def test_bad_frame_type_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        correct_page(np.zeros((500, 500), np.float32))


def test_page_running_out_of_the_picture_is_rejected(photos: dict) -> None:
    frame = photos["photo"].frame
    h, w = frame.shape[:2]
    shifted = np.full_like(frame, 60)
    shifted[:, : w - w // 5] = frame[:, w // 5:]  # the page's left part is cut off
    shifted[:, w - w // 5:] = frame[:, : w // 5]
    with pytest.raises(PageCut) as caught:
        correct_page(shifted)
    assert caught.value.reason == "page_cut" and "whole page" in caught.value.instruction


def _curl(image: np.ndarray, amp: float) -> np.ndarray:
    """The page bent like paper curling up from a flat desk: rows sag by up to ``amp`` pixels."""
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    map_y = yy + amp * np.sin(np.pi * xx / w + 0.2) * (0.5 + yy / h)
    return cv2.remap(image, xx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=255)


def _straight_rules(image: np.ndarray) -> int:
    """Ink in straight horizontal runs of 300 pixels (the table's rules, when they are level)."""
    ink = (image < 128).astype(np.uint8)
    return int(cv2.morphologyEx(ink, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (300, 1))).sum())


@pytest.mark.parametrize("seed", [31, 9])
def test_a_curled_page_is_straightened(seed: int) -> None:
    flat = np.asarray(make_report(seed, "ruled").image)
    curled = _curl(flat, 12)
    fixed, bend = dewarp(curled)
    assert 8 <= bend <= 30
    assert _straight_rules(fixed) > 2 * _straight_rules(curled)


def test_a_flat_page_is_left_as_it_is() -> None:
    flat = np.asarray(make_report(31, "ruled").image)
    fixed, bend = dewarp(flat)
    assert bend == 0.0 and fixed is flat


def test_correct_page_straightens_only_on_request() -> None:
    page = make_report(31, "ruled")
    page.image = Image.fromarray(_curl(np.asarray(page.image), 14))
    frame = photograph(page, "scan").frame
    assert not any(n.startswith("curl") for n in correct_page(frame).notes)
    assert any(n.startswith("curl") for n in correct_page(frame, straighten=True).notes)
