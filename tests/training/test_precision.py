"""`precision: auto | fp32 | bf16`: the choice (hardware probe mocked), the
record in the run folder, and resuming in the recorded precision, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from salclass import precision as prec
from salclass.errors import UserError
from salclass.settings import load_settings
from salclass.training import TrainConfig, read_metrics, train
from salclass.training.checkpoint import load_classifier

CPU = torch.device("cpu")
# bf16 runs of these tests: few small images (`micro_store`), since a CPU
# without bf16 instructions emulates it about ten times slower than fp32.
BF16_SMALL = {"crop": 112, "batch_size": 6, "epochs": 2, "milestones": [2]}


@pytest.fixture(scope="module")
def micro_store(tmp_path_factory, tiny_source) -> Path:
    """4 images per class and split of `tiny_source` at S=120: two batches of 6 an epoch."""
    from salclass.data.prepare import prepare

    root = tmp_path_factory.mktemp("micro_store") / "store"
    prepare(tiny_source, root, 120, seed=0, workers=1, limit_per_class=4, progress=False)
    return root


def _resolve(setting: str, native: bool) -> tuple[str, list[str]]:
    said: list[str] = []
    return prec.resolve_precision(setting, CPU, say=said.append, native=native), said


def test_auto_picks_bf16_only_where_it_is_native():
    assert _resolve("auto", native=True) == ("bf16", [])
    got, said = _resolve("auto", native=False)
    assert got == "fp32"
    assert len(said) == 1 and "\n" not in said[0] and "fp32" in said[0]


def test_explicit_settings_are_kept():
    assert _resolve("fp32", native=True) == ("fp32", [])
    assert _resolve("fp32", native=False) == ("fp32", [])
    assert _resolve("bf16", native=True) == ("bf16", [])
    got, said = _resolve("bf16", native=False)
    assert got == "bf16" and len(said) == 1 and "emulates" in said[0]


def test_fp32_does_not_probe_the_hardware(monkeypatch):
    def probe(device):
        raise AssertionError("probed")

    monkeypatch.setattr(prec, "device_has_native_bf16", probe)
    assert prec.resolve_precision("fp32", CPU, say=print) == "fp32"
    with pytest.raises(AssertionError, match="probed"):
        prec.resolve_precision("auto", CPU, say=print)


@pytest.mark.parametrize("avx512_bf16, amx, native", [(False, False, False), (True, False, True),
                                                      (False, True, True)])
def test_cpu_probe_reads_cpuid_through_torch(monkeypatch, avx512_bf16, amx, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(prec, "_cpuinfo_flags", lambda: {"avx512_bf16", "amx_bf16"})
    assert prec.cpu_has_native_bf16() is native


@pytest.mark.parametrize("flags, native", [({"avx2", "fma"}, False), ({"avx512f", "avx512_bf16"}, True),
                                           ({"amx_bf16", "amx_tile"}, True)])
def test_cpu_probe_falls_back_to_proc_cpuinfo(monkeypatch, flags, native):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.setattr(prec, "_cpuinfo_flags", lambda: flags)
    assert prec.cpu_has_native_bf16() is native


def test_old_amp_flag_reads_as_precision(tmp_path: Path):
    for amp, want in ((True, "auto"), (False, "fp32")):
        path = tmp_path / f"amp-{amp}.yaml"
        path.write_text(yaml.safe_dump({"store": "s", "out": "o", "amp": amp}))
        assert load_settings(TrainConfig, path).precision == want
    with pytest.raises(UserError, match="precision"):
        load_settings(TrainConfig, None, ["store=s", "out=o", "precision=fp16"])


def _recorded(out: Path) -> tuple[str, str, str]:
    config = yaml.safe_load((out / "config.yaml").read_text())["precision"]
    return config, load_classifier(out)["precision"], load_classifier(out)["config"]["precision"]


def test_auto_run_records_bf16_and_resumes_in_it(tmp_path: Path, micro_store: Path, small_config, monkeypatch):
    out = tmp_path / "auto"
    monkeypatch.setattr(prec, "device_has_native_bf16", lambda device: True)
    train(small_config(micro_store, out, **{**BF16_SMALL, "epochs": 1}))
    assert _recorded(out) == ("bf16", "bf16", "bf16")

    # Resumed where bf16 is not native: `auto` keeps the run's bf16 instead of falling back.
    monkeypatch.setattr(prec, "device_has_native_bf16", lambda device: False)
    with pytest.raises(UserError, match="trained in bf16"):
        train(small_config(micro_store, out, **BF16_SMALL, precision="fp32"), resume=True)
    train(small_config(micro_store, out, **BF16_SMALL), resume=True)
    assert _recorded(out) == ("bf16", "bf16", "bf16")
    assert [m["epoch"] for m in read_metrics(out)] == [1, 2]


def test_auto_run_without_bf16_records_fp32(tmp_path: Path, tiny_store: Path, small_config, monkeypatch, capsys):
    out = tmp_path / "fp32"
    monkeypatch.setattr(prec, "device_has_native_bf16", lambda device: False)
    train(small_config(tiny_store, out, epochs=1))
    assert _recorded(out) == ("fp32", "fp32", "fp32")
    assert "no native bfloat16" in capsys.readouterr().err


def test_bf16_resume_is_bit_exact(tmp_path: Path, micro_store: Path, small_config):
    whole = train(small_config(micro_store, tmp_path / "whole", **BF16_SMALL, precision="bf16"))
    part = tmp_path / "part"
    train(small_config(micro_store, part, **{**BF16_SMALL, "epochs": 1}, precision="bf16"))
    train(small_config(micro_store, part, **BF16_SMALL, precision="bf16"), resume=True)

    keys = ("loss", "top1", "top5", "images")
    for a, b in zip(read_metrics(part), read_metrics(whole), strict=True):
        for split in ("train", "val"):
            assert {k: a[split][k] for k in keys} == {k: b[split][k] for k in keys}
    a, b = load_classifier(part), load_classifier(whole)
    assert a["precision"] == b["precision"] == "bf16"
    for key in b["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    # float32 master weights and optimizer state under bf16 autocast
    assert all(v.dtype == torch.float32 for v in b["model"].values() if v.is_floating_point())
    assert all(s["momentum_buffer"].dtype == torch.float32 for s in b["optimizer"]["state"].values())
    # bf16 changed the arithmetic: an fp32 run of the same settings ends elsewhere.
    fp32 = load_classifier(train(small_config(micro_store, tmp_path / "fp32", **BF16_SMALL, precision="fp32")))
    assert any(not torch.equal(fp32["model"][k], v) for k, v in b["model"].items() if v.is_floating_point())
