"""Channel-width rounding shared by the MobileNet-style families (LitePose, EfficientHRNet)."""

from __future__ import annotations


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a width to a multiple of ``divisor`` without dropping more than 10% (MobileNetV2 rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded
