"""Re-export of the user-facing error type (defined device-side so both halves share it)."""

from edgepose.device.errors import EdgeposeError

__all__ = ["EdgeposeError"]
