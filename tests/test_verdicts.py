"""Verdicts are decided by the grader: no trick inside the student's kernel earns a point.

Unit tests of the channel (data only, never pickle) and of the grader's judgement of one
cell, then one graded batch of assignment 01: wrong answers (every function returns 1.5
times the right value, so only the checks can tell) with one attack each on the kernel, and
two correct submissions beside them.
"""

from __future__ import annotations

import base64
import io
import json
import pickle

import numpy as np
import pytest
from conftest import COURSE, shared

from autograde.demo import write_submissions
from autograde.grade import grade
from autograde.verdict import HiddenTests, hidden_tests, judge, judge_cell
from sit471.channel import MIME, decode, encode
from sit471.checks import check_array

NAME = "01_backprop"
NOTEBOOK = "backprop.ipynb"


# --- the channel: data only -------------------------------------------------------------

def test_encode_decode_round_trip():
    value = {"a": np.arange(6.0).reshape(2, 3), "b": [1, 2.5, True, None, "x"],
             "c": (np.int64(3), np.array([True, False]))}
    back = decode(json.loads(json.dumps(encode(value))))
    np.testing.assert_array_equal(back["a"], value["a"])
    assert back["b"] == [1, 2.5, True, None, "x"]
    assert int(back["c"][0]) == 3 and back["c"][1].dtype == bool


def test_non_finite_numbers_survive_json():
    back = decode(json.loads(json.dumps(encode([float("nan"), float("inf")]), allow_nan=False)))
    assert np.isnan(back[0]) and np.isinf(back[1])


def test_torch_tensors_are_sent_as_arrays():
    torch = pytest.importorskip("torch")
    back = decode(encode(torch.ones(2, requires_grad=True) * 2))
    np.testing.assert_array_equal(back, [2.0, 2.0])


@pytest.mark.parametrize("value", [object(), np.array([object()]), lambda: 1, {1: 2}])
def test_what_is_not_data_cannot_be_sent(value):
    with pytest.raises((TypeError, ValueError)):
        encode(value)


def test_a_pickle_is_never_loaded():
    evil = base64.b64encode(pickle.dumps([1, 2])).decode()
    with pytest.raises(ValueError):
        decode({"npy": evil})
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        decode({"npy": base64.b64encode(buffer.getvalue()).decode()})


@pytest.mark.parametrize("data", [{"npy": 3}, {"list": 1}, {"x": [1]}, [1, 2], {"a": 1, "b": 2}])
def test_unknown_shapes_of_data_are_refused(data):
    with pytest.raises(ValueError):
        decode(data)


# --- judging one cell -------------------------------------------------------------------

def _doubling():
    tests = HiddenTests()
    tests.cases("test_double")(lambda rng: [dict(x=rng.normal(size=3)) for _ in range(2)])
    tests.check("test_double")(lambda case, got: check_array(got, 2 * case["x"], "double(x)"))
    return tests


def _payload(results, grade_id="test_double"):
    return {"grade_id": grade_id, "results": results}


def test_judge_cell_passes_right_results_and_names_wrong_ones():
    tests = _doubling()
    cases = tests.make_cases(1)["test_double"]
    check = tests.checkers["test_double"]
    right = _payload([{"ok": encode(2 * c["x"])} for c in cases])
    assert judge_cell("test_double", [right], cases, check) is None
    wrong = _payload([{"ok": encode(-2 * c["x"])} for c in cases])
    assert "double(x) has the wrong sign" in judge_cell("test_double", [wrong], cases, check)


@pytest.mark.parametrize("payloads, message", [
    ([], "did not run to the end"),
    ([_payload([]), _payload([])], "sent 2 times"),
    ([_payload([{"ok": 1}] * 2, grade_id="test_other")], "'test_other' were sent"),
    ([_payload([{"ok": 1}])], "received 1 results"),
    (["garbage"], "could not be read"),
    ([_payload([{"ok": {"npy": "!!"}}, {"ok": 1}])], "could not be read"),
    ([_payload([{"error": "ValueError: boom"}, {"ok": 1}])], "raised ValueError: boom"),
    ([_payload([{"ok": {"list": [1, 2]}}, {"ok": 1}])], "double(x) has shape (2,)"),
])
def test_judge_cell_gives_zero_with_a_reason(payloads, message):
    tests = _doubling()
    cases = tests.make_cases(1)["test_double"]
    reason = judge_cell("test_double", payloads, cases, tests.checkers["test_double"])
    assert reason is not None and message in reason, reason


def test_judge_writes_verdicts_and_removes_results():
    tests = _doubling()
    cases = tests.make_cases(2)
    meta = {"nbgrader": {"grade": True, "grade_id": "test_double", "points": 1}}
    result = {"output_type": "display_data", "metadata": {},
              "data": {MIME: _payload([{"ok": encode(c["x"])} for c in cases["test_double"]])}}
    nb = {"cells": [{"cell_type": "code", "metadata": meta, "outputs": [result], "source": ""}]}
    from nbformat import from_dict

    nb = from_dict(nb)
    judge(nb, tests, cases)
    (out,) = nb.cells[0].outputs
    assert out.output_type == "error" and "double(x)" in out.evalue


def test_each_run_draws_new_inputs_and_a_rerun_the_same():
    tests = hidden_tests(NAME)
    a, b = tests.make_cases(1), tests.make_cases(2)
    assert not np.array_equal(a["test_forward"][0]["X"], b["test_forward"][0]["X"])
    again = tests.make_cases(1)
    np.testing.assert_array_equal(a["test_forward"][0]["X"], again["test_forward"][0]["X"])


def test_every_hidden_test_of_the_course_has_a_grader_half():
    """A hidden section that sends results must have a check, and vice versa."""
    import nbformat
    from conftest import ASSIGNMENTS, nbgrader_meta

    for name in ASSIGNMENTS:
        tests = hidden_tests(name)
        for path in (COURSE / "source" / name).glob("*.ipynb"):
            for cell in nbformat.read(path, as_version=4).cells:
                gid = nbgrader_meta(cell).get("grade_id")
                if "### BEGIN HIDDEN TESTS" in cell.source and "send(" in cell.source:
                    assert tests is not None and gid in tests.checkers, (name, gid)
                assert "sit471.reference" not in cell.source, (name, gid)


# --- attacks on the kernel, graded as a batch -------------------------------------------

_CLEAR_ERRORS = (
    "def _ok(result):\n"
    "    result.error_in_exec = None\n"
    "    result.error_before_exec = None\n"
    "get_ipython().events.register('post_run_cell', _ok)\n"
)

ATTACKS = {
    # every exception swallowed, and the cell reported as a success
    "custom_exc": "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)\n"
                  + _CLEAR_ERRORS,
    "excepthook": "import sys\nsys.excepthook = lambda *a: None\n"
                  "get_ipython().showtraceback = lambda *a, **k: None\n" + _CLEAR_ERRORS,
    # every later cell, the tests included, becomes `pass`
    "transformer": "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])\n",
    "silenced_traceback": "ip = get_ipython()\nip._showtraceback = lambda *a, **k: None\n"
                          "ip.showtraceback = lambda *a, **k: None\n" + _CLEAR_ERRORS,
    # before every cell: the helpers of the visible tests become no-ops again
    "pre_run_cell": "def _quiet(info=None):\n"
                    "    g = get_ipython().user_ns\n"
                    "    for n in ('check_array', 'check_scalar', 'check_gradient'):\n"
                    "        g[n] = lambda *a, **k: None\n"
                    "get_ipython().events.register('pre_run_cell', _quiet)\n",
    "rebound": "check_array = check_scalar = check_gradient = lambda *a, **k: None\n",
    # fake modules: checks that never fail, and a channel that sends made-up results
    "sys_modules": (
        "import sys, types, json, os\n"
        "from IPython.display import display\n"
        "_fake = types.ModuleType('sit471.checks')\n"
        "_fake.check_array = _fake.check_scalar = _fake.check_gradient = lambda *a, **k: None\n"
        "_fake.relative_error = lambda a, b: 0.0\n"
        "sys.modules['sit471.checks'] = _fake\n"
        "_chan = types.ModuleType('sit471.channel')\n"
        "def _send(gid, probe):\n"
        "    n = len(json.load(open(os.environ['SIT471_CASES'])).get(gid, []))\n"
        "    display({'application/vnd.sit471.results+json':\n"
        "             {'grade_id': gid, 'results': [{'ok': 0.5}] * n}}, raw=True)\n"
        "_chan.send = _send\n"
        "sys.modules['sit471.channel'] = _chan\n"
        "check_array = check_scalar = check_gradient = _fake.check_array\n"
    ),
    # the reference under a name no text search would find, copied over the answers
    "refimport": (
        "import base64, importlib\n"
        "try:\n"
        "    _r = importlib.import_module(base64.b64decode('c2l0NDcxLnJlZmVyZW5jZS5iYWNrcHJvcA==')"
        ".decode())\n"
        "    def _copy(*a, **k):\n"
        "        g = get_ipython().user_ns\n"
        "        for n in ('sigmoid', 'sigmoid_prime', 'forward', 'cost', 'backward_output',\n"
        "                  'backward_hidden', 'backward', 'numerical_gradient', 'train'):\n"
        "            g[n] = getattr(_r, n)\n"
        "    get_ipython().events.register('post_run_cell', _copy)\n"
        "except ImportError as e:\n"
        "    print('no reference here:', e)\n"
        "check_array = check_scalar = check_gradient = lambda *a, **k: None\n"
    ),
    # results made up from the grader's own inputs, in place of the test cells
    "fake_results": (
        "import json, os\n"
        "def _fake(lines):\n"
        "    src = ''.join(lines)\n"
        "    if 'send(\"' not in src:\n"
        "        return lines\n"
        "    gid = src.split('send(\"')[1].split('\"')[0]\n"
        "    return ['from IPython.display import display\\n',\n"
        "            'import json, os\\n',\n"
        "            f'_c = json.load(open(os.environ[\"SIT471_CASES\"]))[{gid!r}]\\n',\n"
        "            'display({\"application/vnd.sit471.results+json\": {\"grade_id\": '\n"
        "            f'{gid!r}, \"results\": [{{\"ok\": list(c[\"dict\"].values())[0]}} '\n"
        "            'for c in _c]}}, raw=True)\\n']\n"
        "get_ipython().input_transformers_post.append(_fake)\n"
    ),
}


def _cell(nb, grade_id):
    return next(c for c in nb["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


@pytest.fixture(scope="session")
def attacked(tmp_path_factory):
    return shared(tmp_path_factory, "verdict_attacks", _grade_attacks)


ANSWERS = ("sigmoid", "sigmoid_prime", "forward", "cost", "backward_output", "backward_hidden",
           "backward", "numerical_gradient", "train")
_SCALED = (
    "import numpy as _np\n"
    "def _scaled(f):  # wrong answers of the right shape: 1.5 times the right ones\n"
    "    def wrong(*a, **k):\n"
    "        out = f(*a, **k)\n"
    "        if isinstance(out, tuple):\n"
    "            return tuple(_np.asarray(o) * 1.5 for o in out)\n"
    "        return _np.asarray(out) * 1.5\n"
    "    return wrong\n"
)


def _wrong_answers(reference):
    """The reference with every answer made wrong (same shapes), so that only the checks
    stand between it and the points."""
    nb = json.loads(json.dumps(reference))
    for gid in ANSWERS:
        cell = _cell(nb, gid)
        cell["source"] = "".join(cell["source"]) + f"\n{gid} = _scaled({gid})\n"
    first = _cell(nb, "sigmoid")
    first["source"] = _SCALED + "".join(first["source"])
    return nb


def _grade_attacks(tmp):
    subs = tmp / "subs"
    write_submissions(COURSE, NAME, subs)
    reference = json.loads((subs / "reference" / NOTEBOOK).read_text())
    wrong = _wrong_answers(reference)
    for student, code in {**ATTACKS, "wrong": ""}.items():
        nb = json.loads(json.dumps(wrong))
        cell = _cell(nb, "sigmoid")
        cell["source"] = code + "\n" + "".join(cell["source"])
        (subs / student).mkdir()
        (subs / student / NOTEBOOK).write_text(json.dumps(nb))
    # right answers, every test cell run twice: results arrive twice
    nb = json.loads(json.dumps(reference))
    cell = _cell(nb, "sigmoid")
    cell["source"] = ("get_ipython().input_transformers_post.append(\n"
                      "    lambda lines: lines + ['\\n'] + lines if 'send(' in ''.join(lines)"
                      " else lines)\n" + "".join(cell["source"]))
    (subs / "twice").mkdir()
    (subs / "twice" / NOTEBOOK).write_text(json.dumps(nb))
    (subs / "reference2").mkdir()
    (subs / "reference2" / NOTEBOOK).write_text(json.dumps(reference))
    for name in ("partial", "broken", "blank"):
        for p in (subs / name).iterdir():
            p.unlink()
        (subs / name).rmdir()
    report = grade(COURSE, NAME, subs, tmp / "out", jobs=2, progress=False)
    return {s.student: (s.score, s.max_score, s.reasons) for s in report.students}


def test_correct_submissions_beside_the_attacks_keep_full_marks(attacked):
    for student in ("reference", "reference2"):
        score, top, reasons = attacked[student]
        assert score == top == 15, (student, reasons)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_wrong_answers_with_an_attack_on_the_kernel_earn_nothing(attacked, attack):
    score, _, reasons = attacked[attack]
    assert score == 0, (attack, reasons)
    assert len(reasons) >= 10, reasons  # a reason for every test


def test_wrong_answers_alone_earn_nothing_with_reasons(attacked):
    score, _, reasons = attacked["wrong"]
    assert score == 0 and len(reasons) >= 10, reasons


def test_results_sent_twice_earn_nothing(attacked):
    score, _, reasons = attacked["twice"]
    assert score == 0, reasons
    assert any("sent 2 times" in r for r in reasons), reasons


def test_gradient_check_verdict_accepts_the_reference_on_many_grading_runs():
    """01's test_gradient_check compares the student's backward with a numerical gradient at a
    1e-8 relative tolerance: on every run's inputs a correct backward passes (the numerical
    gradient's own error stays well inside the tolerance), a gradient 1e-5 off fails."""
    from sit471.reference import backprop as ref

    tests = hidden_tests("01_backprop")
    check = tests.checkers["test_gradient_check"]
    # inputs on which the centred difference at eps 1e-4 was off by 1.2e-8 and failed a
    # correct backward, then 300 runs' inputs
    cases = tests.makers["test_gradient_check"](np.random.default_rng(5870))
    for seed in range(300):
        cases += tests.make_cases(seed)["test_gradient_check"]
    for case in cases:
        check(case, ref.backward(case["X"], case["y"], case["W1"], case["W2"]))
    case = tests.make_cases(0)["test_gradient_check"][0]
    d1, d2 = ref.backward(case["X"], case["y"], case["W1"], case["W2"])
    with pytest.raises(AssertionError, match="relative error"):
        check(case, (d1 * (1 + 1e-5), d2))
