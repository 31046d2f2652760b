"""kube.stream_lines: a watch stream's chunks into whole lines, however the chunks fall."""
from __future__ import annotations

import orjson

from irisop_operator.kube import stream_lines


def test_lines_split_across_and_within_chunks_come_out_whole():
    events = [{"type": "ADDED", "object": {"metadata": {"name": f"m{i}", "labels": {"a": "é"}}}} for i in range(50)]
    body = b"".join(orjson.dumps(e) + b"\n" for e in events)
    for size in (1, 7, 64, len(body)):  # one byte at a time up to the whole body in one chunk
        chunks = [body[i:i + size] for i in range(0, len(body), size)]
        assert [orjson.loads(line) for line in stream_lines(chunks)] == events


def test_blank_lines_are_skipped_and_a_cut_off_last_line_is_not_an_event():
    assert list(stream_lines([b'{"a": 1}\n\n', b"\n", b'{"b": 2}\n{"c"'])) == [b'{"a": 1}', b'{"b": 2}']
