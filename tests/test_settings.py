from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest
import yaml

from salclass.errors import UserError
from salclass.io import atomic_torch_save, load_checkpoint
from salclass.settings import load_settings, save_settings


@dataclass
class Inner:
    beta: float = 0.0
    layer: str = "conv3"


@dataclass
class Demo:
    lr: float = 0.01
    epochs: int = 90
    milestones: list[int] = field(default_factory=lambda: [24, 45, 62])
    mode: Literal["real", "constant"] = "real"
    init_from: Optional[str] = None
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


def test_defaults_file_and_overrides(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 0.1\nmilestones: [1, 2]\ninner: {beta: 3}\n")
    s = load_settings(Demo, cfg, ["epochs=5", "inner.layer=conv2", "mode=constant"])
    assert s == Demo(lr=0.1, epochs=5, milestones=[1, 2], mode="constant", inner=Inner(beta=3.0, layer="conv2"))
    out = tmp_path / "resolved.yaml"
    save_settings(s, out)
    assert load_settings(Demo, out) == s
    assert yaml.safe_load(out.read_text())["inner"]["layer"] == "conv2"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("lrr=1", "unknown setting 'lrr'"),
        ("epochs=ten", "epochs: expected an integer"),
        ("epochs=0", "epochs must be >= 1"),
        ("mode=fake", "mode: 'fake' is not one of"),
        ("inner.gamma=1", "unknown setting 'inner.gamma'"),
        ("milestones=3", "milestones: expected a list"),
        ("noequals", "expected key=value"),
    ],
)
def test_bad_values_are_one_line_user_errors(override, fragment):
    with pytest.raises(UserError) as e:
        load_settings(Demo, None, [override])
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_and_broken_files(tmp_path: Path):
    with pytest.raises(UserError, match="not found"):
        load_settings(Demo, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_settings(Demo, bad)


def test_checkpoint_type_and_version_checked(tmp_path: Path):
    p = tmp_path / "c.pt"
    atomic_torch_save({"type": "salclass.classifier", "version": 1, "x": 1}, p)
    assert load_checkpoint(p, "salclass.classifier")["x"] == 1
    with pytest.raises(UserError, match="expected 'salclass.saliency'"):
        load_checkpoint(p, "salclass.saliency")
    atomic_torch_save({"type": "salclass.classifier", "version": 9}, p)
    with pytest.raises(UserError, match="version 9"):
        load_checkpoint(p, "salclass.classifier")
    p.write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(p, "salclass.classifier")


def test_atomic_files_get_ordinary_permissions(tmp_path: Path):
    import os
    import stat

    from salclass.io import atomic_write_text

    p = tmp_path / "x.txt"
    atomic_write_text(p, "hi")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask
    assert p.read_text() == "hi"


def test_exponent_numbers_are_numbers_and_must_be_finite(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("lr: 1e-3\ninner:\n  beta: 5E+2\n")
    s = load_settings(Demo, path)
    assert s.lr == 0.001 and s.inner.beta == 500.0
    assert load_settings(Demo, None, ["lr=-2.5e-4"]).lr == -2.5e-4
    for bad in ("lr=.inf", "lr=-.inf", "lr=.nan", "inner.beta=.NaN"):
        with pytest.raises(UserError, match="expected a finite number"):
            load_settings(Demo, None, [bad])
    path.write_text("lr: .inf\n")
    with pytest.raises(UserError, match="lr: expected a finite number"):
        load_settings(Demo, path)
