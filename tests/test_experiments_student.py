"""What a notebook tells students to rerun works in their install, where sit471.reference is
absent: each experiment, at a tiny size, with the answers passed in and the reference blocked
(``sys.modules["sit471.reference"] = None``, as when the package is not installed)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

import sit471
from sit471.reference import experiments

TOPICS = ("label_number", "dense", "multi", "audio", "parsing")  # notebooks 05-09


@pytest.fixture
def student_install(monkeypatch):
    """sit471.reference cannot be imported; the topic modules are imported afresh under that."""
    for name in [m for m in sys.modules if m.startswith("sit471.reference")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sit471.reference", None)
    monkeypatch.delattr(sit471, "reference", raising=False)
    for topic in TOPICS:
        if f"sit471.{topic}" in sys.modules:
            monkeypatch.setattr(sit471, topic, sys.modules[f"sit471.{topic}"])
            monkeypatch.delitem(sys.modules, f"sit471.{topic}")
    with pytest.raises(ImportError):
        importlib.import_module("sit471.reference.label_number")


def _tiny(lib, tools):
    if lib.__name__ == "sit471.audio":
        res = lib.sweep(tools, train=2, test=1, epochs=1, noise_levels=(0.0,), verbose=False)
        return res, lib.format_table(res)
    res = lib.run_experiments(tools, log=lambda s: None, scale=0.005)
    return res, lib.format_results(res)


@pytest.mark.parametrize("topic", TOPICS)
def test_experiment_runs_without_the_reference(topic, request):
    tools = experiments.tools(topic)  # stand-ins for the notebook's answers, loaded beforehand
    request.getfixturevalue("student_install")
    lib = importlib.import_module(f"sit471.{topic}")
    source = Path(lib.__file__).read_text()
    assert "from sit471.reference" not in source and "import sit471.reference" not in source, (
        f"{lib.__name__} imports the reference somewhere: staff runners go in "
        "sit471.reference.experiments")
    res, table = _tiny(lib, tools)
    assert table.count("\n") >= 3
    json.dumps(res)


def test_staff_command_writes_the_json_the_notebook_reads(tmp_path, capsys):
    """python -m sit471.reference.experiments TOPIC: the reference answers, one JSON file
    (dense: the quickest of the topics at a tiny scale), and its table printed."""
    from sit471 import dense

    out = tmp_path / "results.json"
    assert experiments.main(["dense", "--scale", "0.005", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["settings"]["scale"] == 0.005
    table = dense.format_results(res)
    assert table.count("\n") >= 3 and table in capsys.readouterr().out
    assert {t: Path(f).parent.name for t, (_, _, f) in experiments.TOOLS.items()} == {
        "label_number": "05_label_number", "dense": "06_dense", "multi": "07_multi_branch",
        "audio": "08_audio_beats", "parsing": "09_parsing"}


def test_the_staff_sweep_of_04_says_why_it_cannot_run_in_the_student_install(
        monkeypatch, capsys):
    """`python -m sit471.transfer sweep` needs the reference answers: in the student install
    (no sit471.reference) it stops with a sentence, not a ModuleNotFoundError traceback."""
    from sit471 import transfer

    monkeypatch.setitem(sys.modules, "sit471.reference", None)
    monkeypatch.delitem(sys.modules, "sit471.reference.transfer", raising=False)
    with pytest.raises(SystemExit) as exc:
        transfer.main(["sweep", "--quick"])
    assert exc.value.code == 2
    assert "only the staff install has" in capsys.readouterr().err
