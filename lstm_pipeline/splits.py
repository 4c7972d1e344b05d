"""How many rows the chronological splits need: arithmetic on FeatureConfig alone.

Apart from features.py (which imports torch) so that a command can tell, before it imports its
flow, the rows its flow will ask each series for (flows/commands.py loads a universe ahead).
"""

from __future__ import annotations

from lstm_pipeline.config import FeatureConfig

# in time order: fit, early stopping, conformal calibration of the intervals, reported skill
SPLITS = ("train", "val", "calib", "test")
# windows each split holds at least: the ONNX export checks parity on a batch of >= 2 test
# windows (a batch-1 example would fix the batch axis), so one window is not enough
MIN_WINDOWS_PER_SPLIT = 2


def min_split_rows(cfg: FeatureConfig, windows: int = MIN_WINDOWS_PER_SPLIT) -> int:
    """Rows a split needs to hold `windows` windows with their horizons (windows never cross
    a split, so each split pays for a whole window and horizon once)."""
    return cfg.window + cfg.horizon + windows - 1


def rows_needed(cfg: FeatureConfig) -> int:
    """The fewest rows split_by_time accepts: every split holds MIN_WINDOWS_PER_SPLIT windows."""
    n = len(SPLITS) * min_split_rows(cfg)
    while n < sum(held_out_rows(n, cfg)) + min_split_rows(cfg):
        n += 1
    return n


def split_purpose(cfg: FeatureConfig) -> str:
    """Why a training series needs rows_needed(cfg) rows, for the error message."""
    return (
        f"train/val/calib/test windows ({MIN_WINDOWS_PER_SPLIT} windows of {cfg.window} rows"
        f" + horizon {cfg.horizon} per split)"
    )


def held_out_rows(n: int, cfg: FeatureConfig) -> tuple[int, int, int]:
    """Validation, calibration and test rows of an n-row series: the fractions, but never a
    too-small split."""
    per_split = min_split_rows(cfg)
    fractions = (cfg.val_frac, cfg.calib_frac, cfg.test_frac)
    n_val, n_calib, n_test = (max(round(n * f), per_split) for f in fractions)
    return n_val, n_calib, n_test
