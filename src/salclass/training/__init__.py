"""salclass.training: the thesis's training protocol, evaluation and curves.

    from salclass.training import TrainConfig, train, evaluate_run
    cfg = load_settings(TrainConfig, "configs/train/rgb.yaml", ["store=out/store", "out=runs/rgb"])
    run_dir = train(cfg, resume=False)
    result = evaluate_run(run_dir, "out/store/val")

See docs/ARCHITECTURE.md section 4 for the run folder's files and the modules.
"""

from salclass.training.config import AttentionTransfer, TrainConfig
from salclass.training.engine import NonFiniteLoss, TrainingInterrupted
from salclass.training.evaluate import evaluate_run
from salclass.training.loop import train
from salclass.run_folder import read_metrics

__all__ = ["AttentionTransfer", "NonFiniteLoss", "TrainConfig", "TrainingInterrupted", "evaluate_run",
           "read_metrics", "train"]
