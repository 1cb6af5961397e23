"""In-venv runner for the RecBole peer benchmark (one model x one split per process).

Run by ``benchmarks/recbole_peer.py`` with the python of the RecBole venv; never imported by the
project itself. It applies the compatibility shims RecBole 1.2.1 needs on a current stack
(numpy 2, scipy >= 1.13, torch >= 2.6, no ray), then runs the exact sequence of
``recbole.quick_start.run_recbole`` (1.2.1) with a little instrumentation: wall time of
``trainer.fit`` / ``trainer.evaluate``, epochs run and the per-epoch validation score.

After RecBole's own test evaluation (which loads the best checkpoint), it dumps the trained
model's full-sort score matrices for the valid and test phases (``dump_path``, an ``.npz``):
RecBole's own ``Trainer._full_sort_batch_eval`` with no history mask, so the caller can apply
any mask and compute every metric with the project's evaluator. Only the padding column (item
0) is dropped; nothing else is masked in the dump.

Usage: python recbole_peer_runner.py SPEC.json RESULT.json
SPEC.json: {"model", "dataset", "data_path", "config_dict", "progress_path",
            "dump_path" (optional: where to write the score matrices),
            "train_budget_seconds" (optional soft cap: stop fitting after the first validation
            past it, then test the best checkpoint)}
       or  {"mode": "split", "dataset", "config_dict", "split_path"}: build RecBole's own split
           of a raw atomic dataset (no training) and write each phase's (user, item) tokens,
           so the caller can check that its split equals RecBole's.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import types
from logging import getLogger
from typing import Any

SHIMS: list[str] = []


def apply_shims() -> None:
    """Compatibility shims; each one applied is recorded in SHIMS (written into the result)."""
    import numpy as np

    # numpy 2 removed these aliases; RecBole's Config.compatibility_settings reads
    # np.float_, np.complex_ and np.unicode_ on import of every Config.
    aliases = {
        "bool8": np.bool_,
        "float_": np.float64,
        "complex_": np.complex128,
        "unicode_": np.str_,
        "string_": np.bytes_,
        "object0": np.object_,
        "int0": np.intp,
        "uint0": np.uintp,
        "Inf": np.inf,
        "NaN": np.nan,
    }
    added = []
    for name, value in aliases.items():
        if name not in np.__dict__:
            try:
                getattr(np, name)
            except AttributeError:
                setattr(np, name, value)
                added.append(name)
    if added:
        SHIMS.append("numpy aliases: " + ", ".join(f"np.{n}" for n in added))

    # torch >= 2.6 defaults torch.load(weights_only=True); RecBole's checkpoints hold the
    # Config object, so Trainer.evaluate(load_best_model=True) needs weights_only=False.
    import torch

    if not getattr(torch.load, "_recbole_peer_shim", False):
        original_load = torch.load

        @functools.wraps(original_load)
        def load(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("weights_only", False)
            return original_load(*args, **kwargs)

        load._recbole_peer_shim = True  # type: ignore[attr-defined]
        torch.load = load
        SHIMS.append("torch.load default weights_only=False")

    # scipy >= 1.13 dropped dok_matrix._update (dok is no longer a dict subclass). RecBole's
    # graph models (LightGCN, NGCF, ...) call A._update(data_dict) with {(row, col): 1}.
    import scipy.sparse as sp

    if not hasattr(sp.dok_matrix, "_update"):

        def _update(self: Any, data: dict) -> None:
            inner = getattr(self, "_dict", None)
            if isinstance(inner, dict):
                # Same effect as the removed dict.update: keys are in-range (row, col) pairs.
                inner.update({(int(r), int(c)): self.dtype.type(v) for (r, c), v in data.items()})
            else:  # pragma: no cover - other scipy layouts
                for key, value in data.items():
                    self[key] = value

        sp.dok_matrix._update = _update
        SHIMS.append("scipy.sparse.dok_matrix._update (dict.update on dok._dict)")

    # recbole.quick_start does `from ray import tune` at import time; ray is only used by the
    # hyper-parameter tuning helpers, never by run_recbole. Stub it when it is not installed.
    try:
        import ray  # noqa: F401
    except Exception:
        ray_stub = types.ModuleType("ray")
        ray_stub.tune = types.ModuleType("ray.tune")  # type: ignore[attr-defined]
        sys.modules["ray"] = ray_stub
        sys.modules["ray.tune"] = ray_stub.tune  # type: ignore[attr-defined]
        SHIMS.append("ray stub module (ray not installed; only hyper-tuning uses it)")


class TrainBudgetExceeded(Exception):
    """Raised from fit()'s callback once the soft training-time budget is spent."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
    except Exception:  # pragma: no cover
        pass
    return str(value)


def _metrics(result: Any) -> dict[str, float] | None:
    if result is None:
        return None
    return {str(k): float(v) for k, v in dict(result).items()}


def dump_scores(trainer: Any, dataset: Any, loaders: dict[str, Any], path: str) -> dict:
    """Write each phase's raw full-sort scores of the loaded (best) model to ``path`` (.npz).

    Arrays per phase P (``valid``/``test``), one row per evaluation row of RecBole's
    FullSortEvalDataLoader (general models: one per user; sequential: one per example):
      ``P_users`` (R,) user tokens; ``P_scores`` (R, n_items) float32, columns = ``items``;
      ``P_targets`` flat target item tokens with ``P_target_counts`` (R,) per row;
      sequential models also ``P_last_input`` (R,): the last item of the input sequence.
    ``items`` (n_items,) item tokens (RecBole's padding item 0 dropped).

    Returns:
        A summary (rows and shape per phase) for the result JSON.
    """
    import numpy as np
    import torch

    uid_field, iid_field = dataset.uid_field, dataset.iid_field
    item_tokens = np.asarray(dataset.field2id_token[iid_field][1:]).astype(str)
    arrays: dict[str, Any] = {"items": item_tokens}
    summary: dict[str, Any] = {}
    model = trainer.model
    model.eval()
    list_field = getattr(dataset, "item_id_list_field", None)
    len_field = getattr(dataset, "item_list_length_field", None)
    with torch.no_grad():
        for phase, loader in loaders.items():
            trainer.tot_item_num = loader._dataset.item_num
            if trainer.item_tensor is None:
                trainer.item_tensor = loader._dataset.get_item_feature().to(trainer.device)
            users, rows, targets, counts, last = [], [], [], [], []
            for interaction, _history, pos_u, pos_i in loader:
                # RecBole's own scoring path, with history None: only item 0 gets -inf.
                _, scores, _, _ = trainer._full_sort_batch_eval((interaction, None, pos_u, pos_i))
                rows.append(scores[:, 1:].float().cpu().numpy())
                n = scores.shape[0]
                uids = interaction[uid_field].cpu().numpy()
                users.append(np.asarray(dataset.id2token(uid_field, uids)).astype(str))
                pu, pi = pos_u.cpu().numpy(), pos_i.cpu().numpy()
                order = np.argsort(pu, kind="stable")
                targets.append(np.asarray(dataset.id2token(iid_field, pi[order])).astype(str))
                counts.append(np.bincount(pu, minlength=n))
                if list_field and list_field in interaction:
                    seq = interaction[list_field].cpu().numpy()
                    length = interaction[len_field].cpu().numpy()
                    ids = seq[np.arange(n), length - 1]
                    last.append(np.asarray(dataset.id2token(iid_field, ids)).astype(str))
            arrays[f"{phase}_users"] = np.concatenate(users)
            arrays[f"{phase}_scores"] = np.concatenate(rows).astype(np.float32)
            arrays[f"{phase}_targets"] = np.concatenate(targets)
            arrays[f"{phase}_target_counts"] = np.concatenate(counts)
            if last:
                arrays[f"{phase}_last_input"] = np.concatenate(last)
            summary[phase] = {"rows": len(arrays[f"{phase}_users"])}
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    summary["items"] = len(item_tokens)
    summary["path"] = path
    return summary


def split_tokens(spec: dict) -> dict:
    """RecBole's own split of a raw atomic dataset: each phase's (user, item) tokens, in order."""
    apply_shims()
    import numpy as np
    from recbole.config import Config
    from recbole.data import create_dataset
    from recbole.utils import init_seed

    config = Config(model="BPR", dataset=spec["dataset"], config_dict=dict(spec["config_dict"]))
    if spec.get("data_path"):
        config["data_path"] = os.path.join(spec["data_path"], spec["dataset"])
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    out: dict[str, Any] = {"config_eval_args": _jsonable(config["eval_args"])}
    for phase, part in zip(("train", "valid", "test"), dataset.build(), strict=True):
        u = part.inter_feat[dataset.uid_field].numpy()
        i = part.inter_feat[dataset.iid_field].numpy()
        out[phase] = {
            "users": np.asarray(dataset.id2token(dataset.uid_field, u)).astype(str).tolist(),
            "items": np.asarray(dataset.id2token(dataset.iid_field, i)).astype(str).tolist(),
        }
    with open(spec["split_path"], "w", encoding="utf-8") as fh:
        json.dump(out, fh)
    return {"status": "ok", "mode": "split", "split_path": spec["split_path"]}


def run(spec: dict) -> dict:
    apply_shims()

    import torch

    if spec.get("torch_threads"):
        torch.set_num_threads(int(spec["torch_threads"]))
    import torch.distributed as dist
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.transform import construct_transform
    from recbole.utils import (
        get_environment,
        get_flops,
        get_model,
        get_trainer,
        init_logger,
        init_seed,
        set_color,
    )

    progress_path = spec.get("progress_path")
    progress: list[dict] = []

    def note(event: dict) -> None:
        event = {"t": round(time.time(), 3), **event}
        progress.append(event)
        if progress_path:
            with open(progress_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(event) + "\n")

    t0 = time.perf_counter()
    # ---- mirrors recbole.quick_start.run_recbole (RecBole 1.2.1) ----
    config = Config(
        model=spec["model"], dataset=spec["dataset"], config_dict=dict(spec["config_dict"])
    )
    # Config._set_default_parameters hard-wires data_path to the wheel's dataset_example/ when
    # dataset == "ml-100k"; point it at our copy (byte-identical, checked by the caller).
    forced_data_path = config["data_path"]
    if spec.get("data_path"):
        config["data_path"] = os.path.join(spec["data_path"], spec["dataset"])
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    t_data = time.perf_counter()
    note({"event": "data_ready", "seconds": round(t_data - t0, 3)})

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model)
    transform = construct_transform(config)
    flops = get_flops(model, dataset, config["device"], logger, transform)
    logger.info(set_color("FLOPs", "blue") + f": {flops}")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    valid_curve: list[list[float]] = []
    budget_s = spec.get("train_budget_seconds")
    stopped_by_budget = False
    fit_start = time.perf_counter()

    def callback(epoch_idx: int, valid_score: float) -> None:
        # fit() calls this after early_stopping() and after saving the checkpoint of a new best
        # epoch, before its own stop check, so stopping here is "early stopping by time": the
        # best checkpoint and trainer.best_valid_* are already up to date.
        elapsed = time.perf_counter() - fit_start
        valid_curve.append([int(epoch_idx), float(valid_score)])
        note(
            {
                "event": "valid",
                "epoch": int(epoch_idx),
                "valid_score": float(valid_score),
                "elapsed_fit_s": round(elapsed, 3),
            }
        )
        if budget_s is not None and elapsed >= budget_s:
            raise TrainBudgetExceeded

    try:
        best_valid_score, best_valid_result = trainer.fit(
            train_data,
            valid_data,
            saved=True,
            show_progress=config["show_progress"],
            callback_fn=callback,
        )
    except TrainBudgetExceeded:
        stopped_by_budget = True
        logger.info(f"training stopped by the time budget ({budget_s}s)")
        best_valid_score, best_valid_result = trainer.best_valid_score, trainer.best_valid_result
    train_seconds = time.perf_counter() - fit_start
    note({"event": "fit_done", "seconds": round(train_seconds, 3)})

    test_start = time.perf_counter()
    test_result = trainer.evaluate(
        test_data, load_best_model=True, show_progress=config["show_progress"]
    )
    test_seconds = time.perf_counter() - test_start
    # RecBole's own figure on the valid phase for the best model, beside its test figure.
    valid_result = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
    dump = None
    if spec.get("dump_path"):
        dump_start = time.perf_counter()
        dump = dump_scores(
            trainer, dataset, {"valid": valid_data, "test": test_data}, spec["dump_path"]
        )
        dump["seconds"] = round(time.perf_counter() - dump_start, 3)
    logger.info(
        "The running environment of this training is as follows:\n"
        + (get_environment(config).draw())
    )
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    if not config["single_spec"]:
        dist.destroy_process_group()
    # ---- end of run_recbole mirror ----

    epochs_run = len(trainer.train_loss_dict)
    best_epoch = None
    if valid_curve:
        scores = [s for _, s in valid_curve]
        target = max(scores) if config["valid_metric_bigger"] else min(scores)
        best_epoch = next(e for e, s in valid_curve if s == target)  # early_stopping keeps first

    final_config = _jsonable(dict(config.final_config_dict))
    return {
        "status": "ok",
        "model": spec["model"],
        "model_type": str(config["MODEL_TYPE"]),
        "dataset": spec["dataset"],
        "data_path_used": config["data_path"],
        "data_path_forced_by_recbole": forced_data_path,
        "valid_metric": config["valid_metric"],
        "best_valid_score": float(best_valid_score),
        "best_valid_result": _metrics(best_valid_result),
        "test_result": _metrics(test_result),
        "valid_result_best_model": _metrics(valid_result),
        "score_dump": dump,
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "epochs_config": int(trainer.epochs),
        "stopping_step": config["stopping_step"],
        "stopped_early": epochs_run < int(trainer.epochs) and not stopped_by_budget,
        "stopped_by_train_budget": stopped_by_budget,
        "train_budget_seconds": budget_s,
        "valid_curve": valid_curve,
        "train_seconds": round(train_seconds, 3),
        "data_seconds": round(t_data - t0, 3),
        "test_seconds": round(test_seconds, 3),
        "total_seconds": round(time.perf_counter() - t0, 3),
        "flops": _jsonable(flops),
        "torch_threads": torch.get_num_threads(),
        "dataset_stats": {
            "users": int(dataset.user_num),
            "items": int(dataset.item_num),
            "inters": int(dataset.inter_num),
            "train_inters": int(train_data._dataset.inter_num),
            "valid_inters": int(valid_data._dataset.inter_num),
            "test_inters": int(test_data._dataset.inter_num),
        },
        "shims": list(SHIMS),
        "config_dict": _jsonable(spec["config_dict"]),
        "final_config": final_config,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    result = split_tokens(spec) if spec.get("mode") == "split" else run(spec)
    tmp = argv[2] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    os.replace(tmp, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
