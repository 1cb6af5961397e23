"""Which interrupted runs ``mtrec train`` and ``Recommender.train`` continue (``can_resume``)."""

from __future__ import annotations

import json

from mtrec.config import MTRecConfig
from mtrec.training import RESUME_FILE, can_resume


def interrupted_run(tmp_path, saved: dict) -> None:
    """A checkpoint folder as an interrupted run leaves it: LATEST, its config, resume.pt."""
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "config.json").write_text(json.dumps(saved))
    (tmp_path / "LATEST").write_text("v1\n")
    (tmp_path / RESUME_FILE).write_bytes(b"state")


def test_same_configuration_resumes_whatever_the_thread_count(tmp_path):
    cfg = MTRecConfig.for_protocol("loo")
    saved = json.loads(cfg.model_dump_json())
    saved["train"]["threads"] = 7
    interrupted_run(tmp_path, saved)
    assert can_resume(tmp_path, cfg)


def test_a_setting_added_since_the_save_takes_its_default(tmp_path):
    cfg = MTRecConfig.for_protocol("loo")
    saved = json.loads(cfg.model_dump_json())
    del saved["train"]["neighbour_decays"]  # as written before the setting existed
    interrupted_run(tmp_path, saved)
    assert can_resume(tmp_path, cfg)


def test_another_configuration_restarts(tmp_path):
    cfg = MTRecConfig.for_protocol("loo")
    saved = json.loads(cfg.model_dump_json())
    saved["train"]["lr"] = cfg.train.lr * 2
    interrupted_run(tmp_path, saved)
    assert not can_resume(tmp_path, cfg)
    assert can_resume(tmp_path, MTRecConfig.model_validate(saved))


def test_no_resume_file_or_an_unreadable_config_restarts(tmp_path):
    cfg = MTRecConfig.for_protocol("loo")
    assert not can_resume(tmp_path, cfg)  # nothing there
    interrupted_run(tmp_path, {"train": {"no_such_setting": 1}})
    assert not can_resume(tmp_path, cfg)
    (tmp_path / "v1" / "config.json").write_text("{not json")
    assert not can_resume(tmp_path, cfg)
