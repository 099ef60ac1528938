"""Names several modules share (modalities, the default sample rate) are defined once,
in :mod:`emofuse.modalities`; the modules that use them read them from there."""

from __future__ import annotations

import importlib

import pytest

from emofuse import modalities


@pytest.mark.parametrize("name", ["MODALITY_ORDER", "MODALITIES", "modalities_of"])
def test_the_model_module_defines_no_modality_names_of_its_own(name):
    assert not hasattr(importlib.import_module("emofuse.head.model"), name)


def test_a_bundle_reads_the_inputs_of_its_modality_from_the_shared_module():
    from emofuse import bundle
    from emofuse.finetune import run as finetune

    assert bundle.inputs_of is modalities.inputs_of
    assert finetune.inputs_of is modalities.inputs_of


def test_the_demo_and_the_service_define_no_sample_rate_of_their_own():
    demo = importlib.import_module("emofuse.demo.corpus")
    assert not hasattr(demo, "SAMPLE_RATE_HZ")
    assert demo.DEFAULT_SAMPLE_RATE_HZ == modalities.DEFAULT_SAMPLE_RATE_HZ
    assert not hasattr(importlib.import_module("emofuse.serve.app"), "SAMPLE_RATE_HZ")
