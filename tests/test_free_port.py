"""fer_edge.broker.free_port: ports for services the tests and benchmarks start, clear of the ephemeral range.

A port taken by binding port 0 comes from the ephemeral range, where a process started before the
service binds it (Ray's GCS, raylet and agents) can take it: CI saw Ray Serve's proxy fail with
"Failed to bind to address '127.0.0.1:33633'".
"""

import socket

from fer_edge.broker import QUIET_PORTS, free_port, free_ports, quiet_range


def write_range(tmp_path, text):
    path = tmp_path / "ip_local_port_range"
    path.write_text(text)
    return str(path)


def bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_the_quiet_range_ends_where_the_ephemeral_range_begins(tmp_path):
    assert quiet_range(write_range(tmp_path, "32768\t60999\n")) == (20000, 32768)
    assert quiet_range(write_range(tmp_path, "28000 60999")) == (20000, 28000)
    assert quiet_range(write_range(tmp_path, "40000 60999")) == QUIET_PORTS
    assert quiet_range(write_range(tmp_path, "1024 65535")) == (20000, 20000)  # nothing quiet: port 0's pick
    assert quiet_range(str(tmp_path / "missing")) == QUIET_PORTS
    assert quiet_range(write_range(tmp_path, "not numbers")) == QUIET_PORTS


def test_free_port_is_bindable_and_outside_this_machines_ephemeral_range():
    low, high = quiet_range()
    for _ in range(20):
        port = free_port()
        if high > low:
            assert low <= port < high
        assert bindable(port)


def test_free_port_skips_ports_in_use_and_falls_back_to_the_os_pick_when_all_are():
    low, high = quiet_range()
    base = next(p for p in range(low, high - 3) if all(bindable(q) for q in range(p, p + 3)))
    held = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(3)]
    try:
        for s, port in zip(held[:2], (base, base + 2)):
            s.bind(("127.0.0.1", port))
            s.listen(1)
        assert {free_port(ports=(base, base + 3)) for _ in range(20)} == {base + 1}
        held[2].bind(("127.0.0.1", base + 1))
        held[2].listen(1)
        port = free_port(ports=(base, base + 3))
        assert port not in (base, base + 1, base + 2) and bindable(port)
    finally:
        for s in held:
            s.close()


def test_free_ports_are_distinct():
    ports = free_ports(5)
    assert len(set(ports)) == 5
