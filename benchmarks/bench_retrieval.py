"""Benchmark the retrieval package on this machine.

Measures, for the ml-100k item catalog and for a synthetic catalog of N items:

* first ``ItemIndex.sync`` throughput (embed + upsert, items/s), split into embedding time and
  the rest (hash scan, Chroma upserts);
* the re-sync time of the unchanged catalog (and the first/unchanged ratio);
* ``similar`` query latency (p50/p95 over random items), plus ``search_vector`` (no embedding
  lookup), a filtered ``similar`` and ``search_text`` (includes encoding the query).

Example::

    python benchmarks/bench_retrieval.py \\
        --ml100k /tmp/rb/recbole/dataset_example/ml-100k/ml-100k.item --synthetic-n 100000

Results go to ``benchmarks/results/retrieval.json`` (written after every section, so a partial
run still leaves numbers behind).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python benchmarks/bench_retrieval.py` from a checkout
    sys.path.insert(0, str(ROOT))

from retrieval import Embedder, IndexItem, ItemFilter, ItemIndex  # noqa: E402

TARGETS = {
    "ml100k_items_per_s_min": 350.0,
    "unchanged_speedup_min": 20.0,
    "similar_p50_ms_max_at_100k": 5.0,
}

GENRES = [
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
]  # fmt: skip


class TimedEmbedder(Embedder):
    """Wraps a loaded embedder and accumulates the seconds spent in ``encode``."""

    def __init__(self, inner: Embedder) -> None:
        self.__dict__.update(inner.__dict__)
        self.seconds = 0.0
        self.texts = 0

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        start = time.perf_counter()
        out = super().encode(texts, show_progress)
        self.seconds += time.perf_counter() - start
        self.texts += len(texts)
        return out


def item_text(title: str, year: int | None, genres: Sequence[str]) -> str:
    """The text embedded for a movie: ``"Title (Year). Genres: A, B"``."""
    head = f"{title} ({year})" if year is not None else title
    return f"{head}. Genres: {', '.join(genres)}" if genres else f"{head}."


def load_ml100k(path: Path) -> list[IndexItem]:
    """Parse a RecBole atomic ``ml-100k.item`` file (tab separated, typed header)."""
    items: list[IndexItem] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        col = {name.split(":")[0]: i for i, name in enumerate(header)}
        for line in fh:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < len(header):
                continue
            title = fields[col["movie_title"]].strip()
            year_raw = fields[col["release_year"]].strip()
            year = int(year_raw) if year_raw.isdigit() else None
            genres = tuple(g for g in fields[col["class"]].split() if g)
            items.append(
                IndexItem(
                    item_id=fields[col["item_id"]],
                    text=item_text(title, year, genres),
                    title=title,
                    categories=genres,
                    year=year,
                )
            )
    return items


def synthetic_catalog(n: int, seed: int = 0) -> list[IndexItem]:
    """``n`` movie-like items with random titles, years and 1-3 genres."""
    rng = random.Random(seed)
    adjectives = [
        "Dark",
        "Silent",
        "Golden",
        "Broken",
        "Last",
        "Hidden",
        "Wild",
        "Lost",
        "Red",
        "Eternal",
        "Frozen",
        "Burning",
        "Secret",
        "Final",
        "Crimson",
        "Distant",
    ]
    nouns = [
        "River",
        "Empire",
        "Night",
        "Garden",
        "Signal",
        "Kingdom",
        "Storm",
        "Mirror",
        "Harbor",
        "Frontier",
        "Machine",
        "Island",
        "Promise",
        "Shadow",
        "Voyage",
        "City",
    ]
    items = []
    for i in range(n):
        title = f"The {rng.choice(adjectives)} {rng.choice(nouns)} {i}"
        year = rng.randint(1920, 2024)
        genres = tuple(rng.sample(GENRES, rng.randint(1, 3)))
        items.append(IndexItem(f"s{i}", item_text(title, year, genres), title, genres, year))
    return items


def latency_ms(fn: Callable[[Any], object], args: Sequence[Any], warmup: int = 10) -> dict:
    """p50/p95/mean latency of ``fn(arg)`` over ``args`` (after a few warm-up calls)."""
    for arg in args[:warmup]:
        fn(arg)
    times = []
    for arg in args:
        start = time.perf_counter()
        fn(arg)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "n": len(times),
        "p50_ms": round(statistics.median(times), 3),
        "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 3),
        "mean_ms": round(statistics.fmean(times), 3),
    }


def bench_catalog(
    name: str,
    items: list[IndexItem],
    embedder: Embedder,
    workdir: Path,
    args: argparse.Namespace,
) -> dict:
    """Index ``items`` from scratch, re-sync unchanged, then time queries."""
    # Reference: the bare model throughput on (up to 5000 of) the same texts, so the sync
    # figure can be read as a fraction of what the embedder alone manages on this machine.
    sample = [item.text for item in items[:5000]]
    start = time.perf_counter()
    embedder.encode(sample)
    bare_items_per_s = len(sample) / (time.perf_counter() - start)

    timed = TimedEmbedder(embedder)
    index = ItemIndex(workdir / name, embedder=timed, rebuild=True)
    print(f"[{name}] indexing {len(items)} items ...", flush=True)
    first = index.sync(items, show_progress=args.progress, batch_size=args.batch_size)
    embed_s = timed.seconds
    print(f"[{name}] first sync: {first}", flush=True)

    again = index.sync(items, show_progress=False, batch_size=args.batch_size)
    print(f"[{name}] unchanged re-sync: {again}", flush=True)
    assert again.embedded == 0, again

    rng = random.Random(1)
    query_ids = [items[rng.randrange(len(items))].item_id for _ in range(args.queries)]
    vectors = index.get_embeddings(query_ids)
    # Usually selective (a few % of synthetic items: answered by Chroma's where clause) and a
    # broad filter (most items: answered by post-filtering unfiltered neighbours).
    selective = ItemFilter(categories_any=("Drama", "Comedy"), year_min=1980, year_max=2000)
    broad = ItemFilter(categories_none=("Documentary",), year_min=1930)
    metas = [item.to_metadata() for item in items]
    selectivity = {
        name: round(sum(f.matches(m) for m in metas) / len(metas), 4)
        for name, f in (("genre_and_years", selective), ("not_genre", broad))
    }
    words = ["space adventure", "romantic comedy", "crime thriller in the city", "war drama",
             "animated film for children", "haunted house horror"]  # fmt: skip
    queries = {
        "similar": latency_ms(lambda i: index.similar(i, k=args.k), query_ids),
        "search_vector": latency_ms(lambda v: index.search_vector(v, k=args.k), list(vectors)),
        "similar_filtered_genre_and_years": latency_ms(
            # Fewer of these: at 100k each may run Chroma's metadata pre-filter (~0.1-1 s).
            lambda i: index.similar(i, k=args.k, filters=selective),
            query_ids[:50],
        ),
        "similar_filtered_not_genre": latency_ms(
            lambda i: index.similar(i, k=args.k, filters=broad), query_ids
        ),
        "similar_exclude_50": latency_ms(
            lambda i: index.similar(i, k=args.k, exclude_ids=query_ids[:50]), query_ids
        ),
        "search_text": latency_ms(
            lambda q: index.search_text(q, k=args.k), [words[j % len(words)] for j in range(100)]
        ),
    }
    print(f"[{name}] queries: {json.dumps(queries)}", flush=True)
    return {
        "items": len(items),
        "first_sync_s": round(first.seconds, 3),
        "first_sync_items_per_s": round(len(items) / first.seconds, 1),
        "first_sync_embed_s": round(embed_s, 3),
        "first_sync_other_s": round(first.seconds - embed_s, 3),
        "embed_inside_sync_items_per_s": round(len(items) / embed_s, 1),
        "bare_encode_items_per_s": round(bare_items_per_s, 1),
        "bare_encode_sample": len(sample),
        "unchanged_sync_s": round(again.seconds, 3),
        "unchanged_speedup": round(first.seconds / again.seconds, 1),
        "k": args.k,
        "filters": {
            "genre_and_years": str(selective.to_where()),
            "not_genre": str(broad.to_where()),
            "fraction_of_items_matching": selectivity,
        },
        "queries": queries,
    }


def machine_info(embedder: Embedder) -> dict:
    import chromadb
    import sentence_transformers
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "sentence_transformers": sentence_transformers.__version__,
        "chromadb": chromadb.__version__,
        "device": embedder.device,
        # Other processes share these cores; the load average tells how contended they were.
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ml100k", type=Path, help="RecBole ml-100k.item file")
    parser.add_argument("--synthetic-n", type=int, default=100_000, help="0 to skip")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1000, help="items per upsert")
    parser.add_argument("--embed-batch-size", type=int, default=128, help="texts per forward")
    parser.add_argument("--model", default=None, help="sentence-transformers name or path")
    parser.add_argument("--workdir", type=Path, default=None, help="Chroma dir (default: temp)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/retrieval.json")
    parser.add_argument("--progress", action="store_true", help="show the sync progress bar")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    embedder = Embedder(args.model, batch_size=args.embed_batch_size)
    load_s = time.perf_counter() - start
    result: dict[str, Any] = {
        "command": shlex.join(["python", *sys.argv]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(embedder),
        "model": {
            "id": embedder.model_id,
            "dimension": embedder.dimension,
            "load_s": round(load_s, 2),
            "embed_batch_size": args.embed_batch_size,
        },
        "upsert_batch_size": args.batch_size,
        "targets": TARGETS,
    }

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        workdir = args.workdir or Path(tmp)
        if args.ml100k:
            result["ml100k"] = bench_catalog(
                "ml100k", load_ml100k(args.ml100k), embedder, workdir, args
            )
            save()
        if args.synthetic_n > 0:
            result["synthetic"] = bench_catalog(
                f"synthetic-{args.synthetic_n}",
                synthetic_catalog(args.synthetic_n),
                embedder,
                workdir,
                args,
            )
            save()

    met: dict[str, bool] = {}
    if "ml100k" in result:
        met["ml100k_items_per_s"] = (
            result["ml100k"]["first_sync_items_per_s"] >= TARGETS["ml100k_items_per_s_min"]
        )
        met["ml100k_unchanged_speedup"] = (
            result["ml100k"]["unchanged_speedup"] >= TARGETS["unchanged_speedup_min"]
        )
    if "synthetic" in result:
        met["synthetic_unchanged_speedup"] = (
            result["synthetic"]["unchanged_speedup"] >= TARGETS["unchanged_speedup_min"]
        )
        if result["synthetic"]["items"] >= 100_000:
            met["similar_p50_at_100k"] = (
                result["synthetic"]["queries"]["similar"]["p50_ms"]
                <= TARGETS["similar_p50_ms_max_at_100k"]
            )
    result["targets_met"] = met
    result["total_s"] = round(time.perf_counter() - start, 1)
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    save()
    print(json.dumps(met), f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
