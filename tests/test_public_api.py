"""The public API is importable from the package root (`from emofuse import Bundle, ...`),
each name loaded on first use, so that `import emofuse` stays fast and imports no torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import emofuse

#: Public name -> the module that defines it.
PUBLIC = {
    "Bundle": "emofuse.bundle",
    "read_corpus": "emofuse.corpus",
    "assign_split": "emofuse.splits",
    "leakage_report": "emofuse.splits",
    "sample_train_part": "emofuse.sampling",
    "FeatureStore": "emofuse.features",
    "train_and_evaluate": "emofuse.pipeline",
    "TrainConfig": "emofuse.head.config",
}


@pytest.mark.parametrize("name, module", sorted(PUBLIC.items()))
def test_each_public_name_is_the_object_its_module_defines(name, module):
    assert getattr(emofuse, name) is getattr(importlib.import_module(module), name)
    namespace: dict[str, object] = {}
    exec(f"from emofuse import {name}", namespace)
    assert namespace[name] is getattr(importlib.import_module(module), name)


def test_all_and_dir_list_the_public_names():
    assert set(emofuse.__all__) == {"__version__", *PUBLIC}
    assert set(PUBLIC) <= set(dir(emofuse))
    namespace: dict[str, object] = {}
    exec("from emofuse import *", namespace)
    assert {"__version__", *PUBLIC} <= set(namespace)


def test_an_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        emofuse.NoSuchThing  # noqa: B018
    assert not hasattr(emofuse, "train_and_evalute")
    with pytest.raises(ImportError):
        exec("from emofuse import NoSuchThing", {})


def test_importing_the_package_loads_no_public_module_and_no_torch():
    code = (
        "import sys, emofuse\n"
        "assert emofuse.__version__\n"
        "heavy = sorted(m for m in ('torch', 'pandas', 'sklearn', 'numpy') if m in sys.modules)\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('emofuse.'))\n"
        "print(heavy, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[] []", done.stdout + done.stderr


def test_a_public_name_is_loaded_on_first_use():
    code = (
        "import sys, emofuse\n"
        "assert 'emofuse.head.config' not in sys.modules\n"
        "config = emofuse.TrainConfig\n"
        "assert 'emofuse.head.config' in sys.modules\n"
        "assert vars(emofuse)['TrainConfig'] is config\n"
    )
    subprocess.run([sys.executable, "-c", code], timeout=60, check=True)
