"""Bounded decoding of gzip and deflate bodies, whatever the network's chunk boundaries."""

from __future__ import annotations

import itertools
import zlib

import httpx
import pytest
from ductwork.apps.body import decoded_chunks
from hypothesis import given, settings
from hypothesis import strategies as st

WBITS = {"gzip": 31, "deflate": 15, "rawdeflate": -15}


def response(body: bytes, cuts: list[int], coding: str) -> httpx.Response:
    points = sorted({min(c, len(body)) for c in cuts} | {0, len(body)})

    async def chunks():
        for start, end in itertools.pairwise(points):
            yield body[start:end]

    return httpx.Response(200, headers={"content-encoding": coding}, content=chunks())


@settings(max_examples=200, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=5000), st.integers(0, 300_000).map(bytes)),
    enc=st.sampled_from(sorted(WBITS)),
    cuts=st.lists(st.integers(0, 3000), max_size=8),
    chunk_size=st.integers(1, 70_000),
)
async def test_any_split_decodes_to_the_body_in_bounded_chunks(data, enc, cuts, chunk_size):
    packer = zlib.compressobj(6, zlib.DEFLATED, WBITS[enc])
    body = packer.compress(data) + packer.flush()
    coding = "gzip" if enc == "gzip" else "deflate"
    out = [c async for c in decoded_chunks(response(body, cuts, coding), chunk_size)]
    assert b"".join(out) == data
    assert all(0 < len(c) <= chunk_size for c in out)


async def test_a_body_that_is_not_what_it_says_is_a_decoding_error():
    with pytest.raises(httpx.DecodingError, match="could not decode gzip"):
        [c async for c in decoded_chunks(response(b"not gzip at all", [3], "gzip"))]
