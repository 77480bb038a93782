"""Staff only: the notebooks' experiments run with the reference answers, written to the JSON
files the notebooks read. Like all of ``sit471.reference`` this is not in the student install.

Students rerun an experiment from its notebook with their own functions (delete the JSON file
and run the cell again): the runners in the library (``sit471.label_number.run_experiments``,
``sit471.dense.run_experiments``, ``sit471.multi.run_experiments``, ``sit471.audio.sweep``)
take every answer they need as an argument and import nothing from here.

    python -m sit471.reference.experiments label_number [--out FILE] [--scale S]   # 05
    python -m sit471.reference.experiments dense [--out FILE] [--scale S]          # 06
    python -m sit471.reference.experiments multi [--out FILE] [--scale S]          # 07
    python -m sit471.reference.experiments audio [--out FILE] [--epochs E]         # 08
    python -m sit471.reference.experiments parsing [--out FILE] [--scale S]        # 09
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# topic -> (reference module, the names the runner takes, the file the notebook reads)
TOOLS = {
    "label_number": ("label_number", ("RegressionHead", "regression_loss", "bin_centers",
                                      "expected_value", "box_iou", "detection_loss", "nms",
                                      "verify"),
                     "course/source/05_label_number/results.json"),
    "dense": ("dense", ("confusion_matrix", "iou_from_confusion", "pixel_accuracy",
                        "bilinear_kernel", "PyramidPooling", "scale_invariant_loss",
                        "depth_metrics", "density_map"),
              "course/source/06_dense/results.json"),
    "multi": ("multi", ("late_fusion", "motion_field", "rgb_to_lab", "lab_to_rgb", "quantize_ab",
                        "dequantize_ab", "cross_modal_forward", "band_ablation"),
              "course/source/07_multi_branch/results.json"),
    "audio": ("audio", ("log_mel_spectrogram", "spectral_flux", "pick_peaks", "beat_f_measure"),
              "course/source/08_audio_beats/beats.json"),
    "parsing": ("parsing", ("joint_loss", "mean_iou", "part_consistency", "dice",
                            "soft_dice_loss", "slicewise", "lesion_detection_rate", "dissect",
                            "locally_connected"),
                "course/source/09_parsing/results.json"),
}


def tools(topic: str) -> dict[str, Callable]:
    """The reference answers that topic's runner takes, by the names the notebook uses."""
    module, names, _ = TOOLS[topic]
    ref = importlib.import_module(f"sit471.reference.{module}")
    out = {name: getattr(ref, name) for name in names}
    if topic == "dense":  # 06 compares density maps with 05's direct count regression
        from sit471.reference.label_number import RegressionHead, regression_loss

        out["RegressionHead"] = RegressionHead
        out["regression_loss"] = regression_loss
    if topic == "multi":  # 07 widens a first convolution with assignment 04's answer
        from sit471.reference.transfer import adapt_in_channels

        out["adapt_in_channels"] = adapt_in_channels
    return out


def run(topic: str, scale: float = 1.0, epochs: int = 4, log: Callable[[str], None] = print
        ) -> tuple[dict, str]:
    """Run one topic's experiment with the reference answers: (results, markdown table)."""
    lib = importlib.import_module(f"sit471.{topic}")
    if topic == "audio":
        res = lib.sweep(tools(topic), epochs=epochs)
        return res, lib.format_table(res)
    res = lib.run_experiments(tools(topic), log=log, scale=scale)
    return res, lib.format_results(res)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sit471.reference.experiments",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topic", choices=sorted(TOOLS))
    parser.add_argument("--out", type=Path, help="default: the file the notebook reads")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="shrink the training sets (not for audio)")
    parser.add_argument("--epochs", type=int, default=4, help="audio only")
    args = parser.parse_args(argv)
    out = args.out or Path(TOOLS[args.topic][2])
    res, table = run(args.topic, args.scale, args.epochs,
                     log=lambda s: print(s, file=sys.stderr))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(table)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
