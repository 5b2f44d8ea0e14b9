"""Errors of face verification, one per case a caller (or the person in front of the box) can act on."""

from __future__ import annotations


class FaceError(Exception):
    """A face check could not be made."""


class NoFace(FaceError):
    """No face was found in an image."""


class SeveralFaces(FaceError):
    """More than one face in an image meant for 1:1 and none was selected."""

    def __init__(self, message: str, count: int) -> None:
        super().__init__(message)
        self.count = count


class FaceNotSelectable(FaceError):
    """The selected face index does not exist in the image."""


class PartialFace(FaceError):
    """The face is cut off by the image border: too little of it to compare."""
