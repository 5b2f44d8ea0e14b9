"""Station flows: small state machines driven by events from the drivers.

* :mod:`edge.flows.checkin` - clinic check-in: a health-card code in, an outcome, a queue ticket and a
  signed ``scan`` result out.
* :mod:`edge.flows.masstest` - pooled sampling: a tube barcode opens a tube, up to N people are bound
  to it, the tube closes with the button or the next tube, and a signed ``pool`` result goes out.
* :mod:`edge.flows.identity` - the identity desk: an identity in, a trusted reference face, a live capture with
  liveness, a signed ``face_check`` result out (or, in enrolment mode, a sealed template with consent).

:mod:`edge.flows.factory` builds the flow ``[station] flow`` names.
Flows run in the :class:`~edge.flows.runner.FlowRunner`'s thread, never in the camera loop.
"""
