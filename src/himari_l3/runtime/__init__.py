"""The service layer: the engine run as a service — requests applied in one order,
journaled before they are acknowledged, snapshotted, restored exactly after a crash.

Transport-free: the HTTP app (``himari_l3.service``) and any other transport drive a
`SizingService` built by the composition root (``bootstrap.service.build_service``)."""

from .service import Reply, SizingService, StreamSource

__all__ = ["Reply", "SizingService", "StreamSource"]
