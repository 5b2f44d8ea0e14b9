"""Identity documents read by camera: the ICAO 9303 machine-readable zone of passports and ID cards.

:mod:`edge.documents.mrz` parses and checks the zone's text (pure); :mod:`edge.documents.mrz_ocr` finds
and reads it in a camera frame with Tesseract.
"""
