"""`fer-edge bench serve --ray`: plain `fer-edge serve` and Ray Serve side by side, for real (a few requests).
Runs in .venv-ray (`make test-ray`); elsewhere it skips, saying so."""

import pytest

pytest.importorskip(
    "ray.serve", reason="ray[serve] is not installed in this venv: `make ray-venv`, then `make test-ray`"
)


def test_bench_serve_ray_measures_plain_and_ray_side_by_side():
    from fer_edge import bench_serve_ray

    report = bench_serve_ray.run(None, requests=16, clients=4, replicas=(2,))
    assert report["image"].endswith("2 faces")
    assert [r["service"] for r in report["rows"]] == ["fer-edge serve", "Ray Serve, 2 replicas"]
    for row in report["rows"]:
        assert row["clients"] == 4 and row["requests"] == 16
        assert row["requests_per_s"] > 0 and row["p95_ms"] >= row["p50_ms"] > 0
    assert report["markdown"].count("\n") == 3
