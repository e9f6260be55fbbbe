"""Counting lines and regions given as fractions of the frame: parsed, and refused with a message
that says what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from recog.errors import ConfigError
from recog.geometry import parse_line, parse_points, square_box


def test_a_line_and_a_region_parse_to_fractions_of_the_frame():
    assert parse_line("gate=0,0.75,1,0.75") == ("gate", (0.0, 0.75, 1.0, 0.75))
    assert parse_line(" lane 2 =0.1,0.2,0.3,0.4") == ("lane 2", (0.1, 0.2, 0.3, 0.4))
    np.testing.assert_array_equal(parse_points("0,0,0.4,0,0.4,1", "--roi", 3), [[0, 0], [0.4, 0], [0.4, 1]])


@pytest.mark.parametrize("spec, message", [
    ("gate=0,0.5,1", "at least 2 points"), ("gate=0,0.5,1,0.5,1,1", "a line is two points"), ("0,0.5,1,0.5", "NAME="),
    ("gate=0,0.5,1.5,0.5", "from 0 to 1"), ("gate=a,b,c,d", "expected numbers"), ("gate=0.5,0.5,0.5,0.5", "the same"),
])
def test_a_bad_line_says_what_is_wrong(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_line(spec)


@pytest.mark.parametrize("text, message", [("0,0,1,0", "at least 3 points"), ("0,0,1,0,1,1.2", "from 0 to 1"),
                                           ("0,0,1,x,1,1", "expected numbers"), ("0,0,1,0,1", "x,y pairs")])
def test_a_bad_polygon_says_what_is_wrong(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_points(text, "--roi", 3)


def test_a_crop_is_a_square_with_a_margin_inside_the_frame():
    assert square_box((10, 10, 50, 30), (100, 80)) == [6, 0, 54, 48]
    assert square_box((90, 70, 100, 80), (100, 80)) == [88, 68, 100, 80]  # kept inside the frame
