"""The buffering worker's completeness check: when a request may go to a thread, and what is refused early."""

from __future__ import annotations

import pytest

from mscc_triage_api.server.worker import (BAD_REQUEST, BODY_TOO_LARGE, COMPLETE, HAND_OVER, HEAD_TOO_LARGE, INCOMPLETE,
                                           NOT_IMPLEMENTED, RequestBuffer, problem_bytes)

HEAD = b"POST /v1/triage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def feed_all(parts: list[bytes], **limits) -> list[str]:
    buf = RequestBuffer(**limits)
    return [buf.feed(p) for p in parts]


@pytest.mark.parametrize("parts, verdicts", [
    # no body
    ([b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"], [COMPLETE]),
    # headers arriving a byte at a time, the end split across reads
    ([b"GET / HTTP/1.1\r\nHost: x\r", b"\n", b"\r", b"\n"], [INCOMPLETE, INCOMPLETE, INCOMPLETE, COMPLETE]),
    # Content-Length: complete exactly when the last byte is in
    ([HEAD + b"Content-Length: 4\r\n\r\n{}", b" ", b"}"], [INCOMPLETE, INCOMPLETE, COMPLETE]),
    # declared over the limit: refused before the body is read
    ([HEAD + b"Content-Length: 65537\r\n\r\n"], [BODY_TOO_LARGE]),
    ([HEAD + b"Content-Length: 65536\r\n\r\n"], [INCOMPLETE]),
    # chunked: complete at the last chunk and the end of the trailers
    ([HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", b"0\r\n", b"\r\n"], [INCOMPLETE, INCOMPLETE, COMPLETE]),
    ([HEAD + b"Transfer-Encoding: chunked\r\n\r\n2;ext=1\r\n{}\r\n0\r\nX-T: 1\r\n\r\n"], [COMPLETE]),
    # chunked over the limit: refused as soon as the chunk sizes say so
    ([HEAD + b"Transfer-Encoding: chunked\r\n\r\n10000\r\n", b"1\r\n"], [INCOMPLETE, BODY_TOO_LARGE]),
    # malformed framing: gunicorn's parser answers it
    ([HEAD + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n"], [HAND_OVER]),
    ([HEAD + b"Content-Length: -1\r\n\r\n"], [HAND_OVER]),
    ([HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"], [HAND_OVER]),
    ([HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"], [HAND_OVER]),
    ([HEAD + b"no colon here\r\n\r\n"], [HAND_OVER]),
    # a bare LF ends no line of ours: refused at once, not after the read timeout (which it used to wait for)
    ([b"GET /healthz HTTP/1.1\nHost: x\n\n"], [BAD_REQUEST]),
    ([b"GET / HTTP/1.1\r\nHost: x\r", b"\nX: 1\n"], [INCOMPLETE, BAD_REQUEST]),
    # ... but the body is not the head: a JSON body may hold line feeds
    ([HEAD + b"Content-Length: 3\r\n\r\n{\n}"], [COMPLETE]),
    # HTTP/1.1 names its Host exactly once (RFC 9112, 3.2); HTTP/1.0 need not
    ([b"GET /healthz HTTP/1.1\r\n\r\n"], [BAD_REQUEST]),
    ([b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"], [BAD_REQUEST]),
    ([b"GET /healthz HTTP/1.0\r\n\r\n"], [COMPLETE]),
    ([b"GET /healthz HTTP/1.1\r\nhOsT: x\r\n\r\n"], [COMPLETE]),
    # a coding other than chunked would reach the app undecoded (audit of 5 December): 501
    ([HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n"], [NOT_IMPLEMENTED]),
    ([HEAD + b"Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n"], [NOT_IMPLEMENTED]),
    ([HEAD + b"Transfer-Encoding: Chunked\r\n\r\n0\r\n\r\n"], [COMPLETE]),
])
def test_verdicts(parts, verdicts):
    assert feed_all(parts) == verdicts


def test_a_header_section_over_the_limit_is_refused_without_its_end():
    assert feed_all([b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 2000], max_head=1024) == [HEAD_TOO_LARGE]


def test_one_byte_chunks_are_scanned_in_linear_time():
    buf = RequestBuffer()
    assert buf.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n") == INCOMPLETE
    for _ in range(5000):                      # 30 kB of one-byte chunks, fed a chunk at a time
        assert buf.feed(b"1\r\na\r\n") == INCOMPLETE
    assert buf.feed(b"0\r\n\r\n") == COMPLETE


def test_expect_100_continue_is_noticed():
    buf = RequestBuffer()
    buf.feed(HEAD + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert buf.expects_continue


def test_early_answers_are_problem_documents():
    raw = problem_bytes(413, "Content Too Large", "The body is larger than 65536 bytes.")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 413 Content Too Large\r\n")
    assert b"Content-Type: application/problem+json" in head and b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert body.startswith(b'{"type": "about:blank", "title": "Content Too Large", "status": 413')
