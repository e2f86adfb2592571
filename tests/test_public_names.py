"""A module's docstring that lists its public names lists those of its `__all__`: five had drifted from it."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _listing_modules() -> list[Path]:
    return sorted(path for package in ("elr_mri", "preprocess") for path in (ROOT / package).rglob("*.py")
                  if "Public names:" in (ast.get_docstring(ast.parse(path.read_text())) or ""))


def _exported(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return {element.value for element in node.value.elts}
    return set()


def test_the_public_names_a_docstring_lists_are_its_modules_all():
    modules = _listing_modules()
    assert len(modules) >= 5  # the search still finds the listing modules
    for path in modules:
        tree = ast.parse(path.read_text())
        docstring = ast.get_docstring(tree)
        listed = set(re.findall(r"`(\w+)`", docstring[docstring.index("Public names:"):]))
        exported = _exported(tree)
        assert listed == exported, (f"{path.relative_to(ROOT)}: its docstring lists {sorted(listed - exported)} "
                                    f"beyond __all__ and leaves out {sorted(exported - listed)}")


def test_the_packages_docstring_names_modules_that_export_what_it_says() -> None:
    """`help(elr_mri)` is a notebook user's map of where the names live: each `module`: `Name` it gives must hold."""
    import importlib

    import elr_mri

    entries = re.findall(r"^- (.*)$", elr_mri.__doc__, re.M)
    assert len(entries) >= 5
    for entry in entries:
        for module, names in re.findall(r"`(elr_mri[\w.]*)`: ((?:`\w+`(?:, )?)+)", entry):
            exported = set(importlib.import_module(module).__all__)
            assert set(re.findall(r"`(\w+)`", names)) <= exported, (module, names)


def test_the_selection_rules_are_read_without_importing_the_training_loop() -> None:
    """evaluate and the report name a run's selection rule: they imported it from `runner`, the whole training loop,
    whose `__all__` did not list `SELECTION_RULES`. `selection` holds both, light; `runner` still exports the rule."""
    loaded = _modules_loaded_by("from elr_mri.engine.selection import SELECTION_RULES, selection_rule")
    assert {name for name in loaded if name.startswith("elr_mri.engine.") or name == "torch"} == {
        "elr_mri.engine.selection"}
    from elr_mri.engine import runner, selection

    assert selection.__all__ == ["SELECTION_RULES", "selection_rule"]
    assert runner.selection_rule is selection.selection_rule


def test_scoring_a_run_does_not_import_the_training_loop() -> None:
    """`evaluate`, `explain` and the report took `resolve_device` and `uses_age` from `runner`, the training loop:
    a change to training could break scoring. They live with the device switches and the models now."""
    loaded = _modules_loaded_by("import elr_mri.commands.evaluate, elr_mri.evaluation.evaluate, "
                                "elr_mri.evaluation.explain, elr_mri.report")
    assert "elr_mri.evaluation.evaluate" in loaded and "elr_mri.engine.runner" not in loaded


def test_the_data_and_the_models_do_not_import_the_training_engine() -> None:
    """The disk cache, the label-file reader and the pretrained weights took atomic tensor writes and torch's refusal
    of pickled objects from `engine.checkpoint`: data and models depended on the engine that trains on them. Those
    live in `elr_mri.tensor_files` now. Read from the source, so an import inside a function counts too."""
    engine_imports = [f"{path.relative_to(ROOT)}:{node.lineno}" for package in ("data", "models")
                      for path in sorted((ROOT / "elr_mri" / package).rglob("*.py"))
                      for node in ast.walk(ast.parse(path.read_text()))
                      if any(name == "elr_mri.engine" or name.startswith("elr_mri.engine.") for name in _imported(node))]
    assert engine_imports == []


def _imported(node: ast.AST) -> list[str]:
    """The modules an import statement names (`from a import b` names `a` and `a.b`: b may be a module); none for
    other nodes."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return []


def _modules_loaded_by(imports: str) -> set[str]:
    """The modules a fresh interpreter holds after `imports`: which others importing them pulls in."""
    code = f"import sys; {imports}; print(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(loaded.stdout.split())
