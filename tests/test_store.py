"""Files the run writes: atomic, and with the permissions the user's umask asks for."""

import json
import os
import stat

import pytest

from netadjust.store import append_jsonl, save_torch, write_json


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        append_jsonl(tmp_path / "h.jsonl", {"y": 2})
        save_torch(tmp_path / "c.pt", {"z": 3})
    finally:
        os.umask(previous)
    for name in ("a.json", "h.jsonl", "c.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "c.pt", "h.jsonl"]  # no leftovers
