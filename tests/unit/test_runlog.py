from mainspring.worker.runlog import FLUSH_BYTES, RunLogEmitter


class Sink:
    def __init__(self):
        self.events = []

    def __call__(self, type_, **fields):
        self.events.append((type_, fields))


def test_chunks_are_numbered_in_order_and_complete():
    sink = Sink()
    log = RunLogEmitter(sink)
    lines = [f"line {i}\n" for i in range(5000)]
    for line in lines:
        log.write(line)
    log.flush()
    assert [f["seq"] for _, f in sink.events] == list(range(len(sink.events)))
    assert "".join(f["text"] for _, f in sink.events) == "".join(lines)
    assert all(t == "task-log" for t, _ in sink.events)
    assert len(sink.events) >= len("".join(lines)) // FLUSH_BYTES


def test_output_past_the_cap_is_dropped_with_one_marker():
    sink = Sink()
    log = RunLogEmitter(sink, cap_bytes=100)
    for _ in range(50):
        log.write("0123456789\n")
    log.flush()
    text = "".join(f["text"] for _, f in sink.events)
    assert text.count("log truncated") == 1
    assert len(text) < 200
    assert sink.events[-1][1]["truncated"] is True
