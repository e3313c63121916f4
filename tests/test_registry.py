"""Registry helpers: size parsing and input-size validation messages."""

import pytest

from edgepose.errors import EdgeposeError
from edgepose.models import check_input_size, get_spec, parse_size


@pytest.mark.parametrize(
    ("text", "size"), [("448", (448, 448)), ("256x192", (256, 192)), ("384×288", (384, 288))]
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "256x", "0x10", "1x2x3", "-32"])
def test_parse_size_rejects_garbage(text):
    with pytest.raises(EdgeposeError, match="bad input size"):
        parse_size(text)


def test_check_input_size_names_both_bad_axes():
    spec = get_spec("litepose-s")
    check_input_size(spec, 448, 320)
    with pytest.raises(EdgeposeError) as err:
        check_input_size(spec, 450, 8)
    msg = str(err.value)
    assert "height 450 (nearest valid: 448 or 464)" in msg
    assert "width 8 (nearest valid: 16)" in msg
