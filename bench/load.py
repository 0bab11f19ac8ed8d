"""Load test of `regard serve` on loopback: requests/s and p50/p99 latency for detect and search
with 1, 4 and 16 concurrent clients, next to the library's own call rate measured in the same run.

    python bench/load.py --data ../shared/data/lfw-fold1            # ~2 minutes on 2 cores

It starts a real server (its own temporary store and master key, loopback only), enrolls a gallery
of LFW people through the library, then for each workload and concurrency level runs clients for a
fixed time (--seconds) and stops by itself. Every response is checked (status 200, and for search a
well-formed answer); the table says how many failed. The library rate is `regard.detect` and
`gallery.search_photo` called in this process, one at a time, with the server idle.

Output: a table on stdout, JSON in bench/results/load.json (or --out).
"""

from __future__ import annotations

import datasets  # bench/datasets.py: the data, and a clear refusal without it

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import httpx  # noqa: E402

from tests.service_harness import running_service  # noqa: E402

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "lfw-fold1"
DEFAULT_OUT = HERE / "results" / "load.json"
COLLECTION = "load"
PURPOSE = "load benchmark"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def people(data: Path, count: int, seed: int) -> tuple[list[tuple[str, Path]], list[Path]]:
    """(person, photo) pairs to enroll (first photo of people with 2+ photos) and probe photos
    (their second photos, so searches find someone)."""
    folders = sorted(p for p in (data / "lfw").iterdir() if p.is_dir())
    with_two = [f for f in folders if len(list(f.glob("*.jpg"))) >= 2]
    random.Random(seed).shuffle(with_two)
    chosen = with_two[:count]
    enroll = [(f.name.replace(" ", "_"), sorted(f.glob("*.jpg"))[0]) for f in chosen]
    probes = [sorted(f.glob("*.jpg"))[1] for f in chosen]
    return enroll, probes


def run_level(
    clients: int, seconds: float, make_request: Callable[[httpx.Client, int], httpx.Response], check: Callable[[httpx.Response], bool], headers: dict[str, str], url: str
) -> dict[str, Any]:
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(index: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            n = index
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    response = make_request(client, n)
                    ok = check(response)
                    problem = None if ok else f"{response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = repr(exc)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if problem:
                        failures.append(problem)
                n += clients

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - began
    return {
        "clients": clients,
        "requests": len(latencies),
        "failed": len(failures),
        "failures": failures[:5],
        "rps": len(latencies) / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def library_rate(fn: Callable[[int], Any], seconds: float) -> dict[str, Any]:
    times = []
    stop_at = time.monotonic() + seconds
    n = 0
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        fn(n)
        times.append(time.perf_counter() - started)
        n += 1
    return {"calls": len(times), "rps": len(times) / sum(times), "p50_ms": statistics.median(times) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an LFW fold (folder with lfw/)")
    parser.add_argument("--gallery", type=int, default=150, help="people to enroll (default %(default)s)")
    parser.add_argument("--clients", default="1,4,16", help="concurrency levels (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per level (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    datasets.require(args.data, "lfw")
    os.environ.setdefault("REGARD_THREADS", "1")

    from regard import detect
    from regard.gallery import enroll, search_photo
    from regard.store import ConsentBasis, open_store

    enrollees, probes = people(args.data, args.gallery, args.seed)
    probe_bytes = [p.read_bytes() for p in probes]
    levels = [int(c) for c in args.clients.split(",")]
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"gallery": len(enrollees), "seconds": args.seconds, "workers": args.workers, "threads_per_worker": os.environ["REGARD_THREADS"]},
        "service": {},
        "library": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        with running_service(Path(tmp), "--workers", str(args.workers)) as svc:
            store = open_store(svc.store_url)
            store.create_collection(COLLECTION, purpose=PURPOSE, actor="bench")
            print(f"enrolling {len(enrollees)} people ...", file=sys.stderr)
            for person, photo in enrollees:
                store.add_person(COLLECTION, person, actor="bench")
                store.record_consent(COLLECTION, person, basis=ConsentBasis.CONSENT, actor="bench")
                enroll(store, COLLECTION, photo, person_id=person, actor="bench")
            faces = store.get_collection(COLLECTION).face_count

            # The library, in this process, while the server is idle.
            results["library"]["detect"] = library_rate(lambda n: detect(probe_bytes[n % len(probe_bytes)], embed=False), args.seconds)
            results["library"]["search"] = library_rate(
                lambda n: search_photo(store, COLLECTION, probe_bytes[n % len(probe_bytes)], actor="bench", purpose=PURPOSE),
                args.seconds,
            )
            store.close()

            headers = svc.bearer("detect", "search")
            workloads: dict[str, tuple[Callable[[httpx.Client, int], httpx.Response], Callable[[httpx.Response], bool]]] = {
                "detect": (
                    lambda c, n: c.post("/v1/detect", files={"image": probe_bytes[n % len(probe_bytes)]}),
                    lambda r: r.status_code == 200 and len(r.json()["faces"]) >= 1,
                ),
                "search": (
                    lambda c, n: c.post(
                        f"/v1/collections/{COLLECTION}/search",
                        files={"image": probe_bytes[n % len(probe_bytes)]},
                        data={"purpose": PURPOSE},
                    ),
                    lambda r: r.status_code == 200 and "candidates" in r.json()["faces"][0],
                ),
            }
            for name, (make, check) in workloads.items():
                results["service"][name] = []
                for clients in levels:
                    print(f"{name}: {clients} clients for {args.seconds:g} s ...", file=sys.stderr)
                    results["service"][name].append(run_level(clients, args.seconds, make, check, headers, svc.url))
    results["settings"]["faces_enrolled"] = faces

    print(f"\nregard serve on loopback, {args.workers} workers x {os.environ['REGARD_THREADS']} thread(s), {faces} faces enrolled, {os.cpu_count()} CPUs")
    print(f"{'workload':<8} {'clients':>7} {'requests':>8} {'failed':>6} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
    print("-" * 60)
    summary: dict[str, Any] = {}
    for name, rows in results["service"].items():
        lib = results["library"][name]
        print(f"{name:<8} {'library':>7} {lib['calls']:>8} {0:>6} {lib['rps']:>7.1f} {lib['p50_ms']:>8.1f} {'':>8}")
        for row in rows:
            print(f"{name:<8} {row['clients']:>7} {row['requests']:>8} {row['failed']:>6} {row['rps']:>7.1f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f}")
        best = max(r["rps"] for r in rows)
        summary[name] = {"best_service_rps": best, "library_rps": lib["rps"], "ratio": best / lib["rps"]}
    failed = sum(r["failed"] for rows in results["service"].values() for r in rows)
    results["summary"] = {**summary, "failed_requests": failed}
    for name, s in summary.items():
        print(f"{name}: best service rate {s['best_service_rps']:.1f} req/s = {s['ratio']:.2f}x the library's {s['library_rps']:.1f} calls/s")
    print(f"failed requests: {failed}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
