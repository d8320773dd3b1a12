"""The shape of the code: no import cycles, no private names imported across modules, one registry that
refuses duplicates and lists what `classlab train` accepts, commands that leave their caller's options
alone and return one RunResult type."""

import ast
import copy
import json
from pathlib import Path

import pytest

import classlab
from classlab.cli import main

SRC = Path(classlab.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = ["classlab", *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _module_level_imports(name: str, path: Path, modules: dict) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for imports executed when the module loads: top-level
    statements and the bodies of top-level if/try, not functions (those are lazy on purpose)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found, todo = [], list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.If, ast.Try)):
            todo += node.body + node.orelse + getattr(node, "finalbody", []) + \
                [s for h in getattr(node, "handlers", []) for s in h.body]
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("classlab")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("classlab"):
                found += [(base, a.name) for a in node.names]
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {m: set() for m in modules}
    for name, path in modules.items():
        for target, item in _module_level_imports(name, path, modules):
            sub = f"{target}.{item}" if item else None
            graph[name].add(sub if sub in modules else target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"
    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycles():
    graph = _graph()
    # the graph is the real one (relative imports resolved), and the search finds a cycle where there is one
    assert "classlab.training.engine" in graph["classlab.commands.train"]
    assert "classlab.inference.preprocess" in graph["classlab.training.engine"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


# The layer order (README, "Where things live"): a module may import from its own layer and the ones before
# it, never from a later one, at module level or inside a function. The root package (lazy API exports and
# ``__version__``) and ``compat`` (old paths, by string) stand outside the order.
LAYERS = [
    ("foundation", ["errors", "fileio", "safe_files", "threads", "lazy", "device", "plots", "checkpoint",
                    "notebook", "progress"]),
    ("data", ["data"]),
    ("models", ["models", "scratch"]),
    ("inference contract", ["inference"]),
    ("training", ["training", "backbones"]),
    ("evaluation", ["evaluation", "checks"]),
    ("trained runs", ["trained"]),
    ("runs", ["runs"]),
    ("commands", ["commands"]),
    ("api", ["api"]),
    ("interfaces", ["cli", "web", "__main__"]),
]
OUTSIDE_THE_ORDER = {"classlab", "classlab.compat", "classlab.__version__"}


def layer_of(module: str) -> int | None:
    if module in OUTSIDE_THE_ORDER:
        return None
    top = module.split(".")[1]
    found = [i for i, (_, names) in enumerate(LAYERS) if top in names]
    assert found, f"{module} is in no layer: add it to LAYERS and to the README's layer order"
    return found[0]


def all_imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported classlab module, line) for every import in the module, function-level ones included."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("classlab")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            if base.startswith("classlab"):
                found += [(f"{base}.{a.name}" if base == "classlab" else base, node.lineno) for a in node.names]
    return found


def upward_imports(modules: dict[str, Path]) -> list[str]:
    offenders = []
    for name, path in modules.items():
        here = layer_of(name)
        for target, line in all_imports(name, path):
            there = layer_of(target)
            if here is not None and there is not None and there > here:
                offenders.append(f"{name}:{line} imports {target} ({LAYERS[here][0]} -> {LAYERS[there][0]})")
    return offenders


def test_imports_follow_the_layer_order(tmp_path):
    offenders = upward_imports(_modules())
    assert not offenders, "imports up the layer order:\n" + "\n".join(offenders)
    # the check sees a function-level import that goes up (a planted module in a copy of the tree)
    planted = tmp_path / "engine_extra.py"
    planted.write_text("def f():\n    from ..commands.train import run_train\n")
    assert upward_imports({"classlab.training.engine_extra": planted}) == [
        "classlab.training.engine_extra:2 imports classlab.commands.train (training -> commands)"]


def test_no_module_shares_a_name_with_an_api_function():
    functions = {n for n in classlab.__all__ if n[0].islower() and n != "__version__"}
    modules = {p.stem for p in SRC.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    assert functions and not functions & modules, functions & modules


def test_the_registry_imports_no_model_family():
    families = {p.stem for p in (SRC / "models").glob("*.py")} - {"__init__", "registry"}
    imported = {target.rsplit(".", 1)[-1] for target, _ in all_imports("classlab.models.registry",
                                                                       SRC / "models" / "registry.py")}
    assert not imported & families, imported & families


def test_no_private_names_imported_across_modules():
    offenders = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):  # lazy imports inside functions too
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("classlab")):
                offenders += [f"{name}: from {'.' * node.level}{node.module or ''} import {a.name}"
                              for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    assert not offenders, offenders


def test_registry_refuses_a_duplicate_name():
    from classlab.models import list_models, register

    list_models()
    with pytest.raises(ValueError, match="already registered"):
        register("mlp", "another mlp")(lambda num_classes, in_channels, image_size: None)


def test_classlab_models_lists_what_train_accepts_and_nothing_internal(capsys):
    from classlab.models import count_parameters, create_model, get_entry, list_models

    names = list_models()
    assert "scratch-mlp" in names and "transfer" not in names and "transfer" in list_models(include_hidden=True)
    assert get_entry("scratch-mlp").kind == "numpy" and get_entry("mlp").kind == "torch"
    net = create_model("scratch-mlp", 10, 1, (8, 8), hidden=[32])
    assert count_parameters(net) == (64 * 32 + 32 + 32 * 10 + 10,) * 2
    assert main(["models", "--input", "1x8x8"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert listed == names
    assert main(["train", "digits", "--model", "transfer"]) == 2
    assert "classlab transfer" in capsys.readouterr().err


def test_every_command_returns_a_run_result_that_reads_back(runs_dir):
    from classlab import RunResult

    results = [classlab.knn("digits", k=[1, 3]), classlab.train("digits", "logreg", epochs=2, progress=False),
               classlab.train("digits", "scratch-mlp", epochs=2, progress=False), classlab.explore("digits")]
    for result in results:
        assert isinstance(result, RunResult) and result.report.is_file()
        again = RunResult.load(result.run_dir)
        assert (again.command, again.accuracy, again.macro_f1) == (result.command, result.accuracy, result.macro_f1)
    knn_run, torch_run, numpy_run, explored = results
    assert knn_run.accuracy > 0.95 and knn_run.details["k"] in (1, 3) and explored.accuracy is None
    assert len(torch_run.history) == 2 and RunResult.load(torch_run.run_dir).history[1]["epoch"] == 2
    assert torch_run.predict(classlab.load_dataset("digits").images[:2])[0]["top"]


def test_commands_leave_their_callers_options_alone(runs_dir):
    from classlab.commands.lr_find import lr_find
    from classlab.data.options import DataOptions
    from classlab.training.config import TrainConfig

    opts, cfg = DataOptions(), TrainConfig(model="logreg")
    before = copy.deepcopy((opts, cfg))
    lr_find(opts, cfg, steps=20)
    classlab.knn("digits", k=1)
    assert (opts, cfg) == before


def test_no_validation_split_means_no_validation_accuracy(runs_dir):
    """Without validation, the best epoch is picked on training loss, and nothing calls it validation."""
    run = classlab.train("digits", "logreg", epochs=2, progress=False, data_options={"val_fraction": 0.0})
    from classlab.checkpoint import load_checkpoint

    state = load_checkpoint(run.run_dir / "last.pt")["fit_state"]
    assert state["best_val_acc"] is None and state["best_score"] < 0
    assert "val_acc" not in json.dumps(run.history)


def test_old_import_paths_still_work_for_one_release_and_say_where_things_went():
    import importlib
    import sys

    from classlab.inference.preprocess import Preprocessing
    from classlab.training.augment import augment

    sys.modules.pop("classlab.training.tensors", None)
    with pytest.warns(DeprecationWarning, match="classlab.inference.preprocess"):
        old = importlib.import_module("classlab.training.tensors")
    assert old.Preprocessing is Preprocessing and old.augment is augment
    sys.modules.pop("classlab.prepare", None)
    with pytest.warns(DeprecationWarning, match="classlab.data.options"):
        from classlab.prepare import DataOptions  # a plain rename
    assert DataOptions is importlib.import_module("classlab.data.options").DataOptions
    with pytest.raises(AttributeError, match="moved to"):
        old.no_such_name


def test_paths_moved_by_the_layering_still_import_and_the_api_functions_stay_callable():
    """0.2's module paths of what issue 28 moved import for one release with a DeprecationWarning; the old
    modules ``classlab.knn`` and ``classlab.transfer`` were also the API's functions and still call them."""
    import importlib
    import sys

    from classlab.backbones.config import TransferConfig
    from classlab.models.knn import KNNClassifier
    from classlab.trained.model import RunModel

    for old, name, new in (("classlab.transfer.config", "TransferConfig", TransferConfig),
                           ("classlab.knn", "KNNClassifier", KNNClassifier),
                           ("classlab.commands.run_model", "RunModel", RunModel)):
        for key in [k for k in sys.modules if k == old or k.startswith(old + ".")]:
            sys.modules.pop(key)
        with pytest.warns(DeprecationWarning, match="old path goes away"):
            assert getattr(importlib.import_module(old), name) is new
    run = classlab.knn("digits", k=1, progress=False)  # the package attribute is the alias module now
    assert run.command == "knn" and callable(classlab.transfer)
    with pytest.warns(DeprecationWarning, match="TrainedNetwork"):
        assert classlab.TrainedRun is classlab.TrainedNetwork
