"""Face verification on the box: detection, landmarks, embedding, 1:1 comparison and liveness.

| Module | Job |
|---|---|
| ``geometry`` | affine crops, similarity fit, Pillow warping |
| ``detect`` | BlazeFace anchors, box decoding, weighted NMS |
| ``landmarks`` | 468-point mesh, iris and eyelid contour |
| ``embed`` | ArcFace 5-point alignment, SFace embeddings |
| ``pipeline`` | detect → mesh → align → embed, one per worker thread |
| ``verify`` | static 1:1 comparison (photo vs photo) |
| ``passive`` | MiniFASNet passive liveness (when provisioned) |
| ``active`` | challenge–response liveness |
| ``cli`` | ``ehc-edge face compare`` |

Face images and embeddings stay in memory: never written to disk, logs or messages.
"""
