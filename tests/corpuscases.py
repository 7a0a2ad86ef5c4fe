"""The hostile-input corpus (tests/corpus/): its cases, and a release root prepared for one.

Shared by the corpus test (tests/plugin/test_corpus.py), which runs each case
through doit, and the schema test (tests/test_schemas.py), which validates
each case's files against the JSON Schemas.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from conftest import copy_example

CORPUS = Path(__file__).resolve().parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "case.yaml").is_file())


@dataclass(frozen=True)
class Case:
    name: str
    expect: tuple[str, ...]
    remove: tuple[str, ...]
    also_list: bool

    @classmethod
    def read(cls, name: str) -> Case:
        spec = yaml.safe_load((CORPUS / name / "case.yaml").read_text()) or {}
        return cls(name, tuple(spec["expect"]), tuple(spec.get("remove", ())), bool(spec.get("list")))



def prepare(case: Case, root: Path) -> Path:
    """The example release root with the case's overlay, removals and generated files."""
    copy_example(root)
    overlay = CORPUS / case.name / "overlay"
    if overlay.is_dir():
        shutil.copytree(overlay, root, symlinks=True, dirs_exist_ok=True)
    for relative in case.remove:
        (root / relative).unlink()
    generator = CORPUS / case.name / "generate.py"
    if generator.is_file():
        spec = importlib.util.spec_from_file_location(f"corpus_{case.name.replace('-', '_')}", generator)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.generate(root)
    return root
