"""The human-facing parts of an artifact: confusion-matrix plot and model card."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from irisop_serving.contract import CLASSES


def plot_confusion_matrix(confusion: np.ndarray, path: Path) -> None:
    # Agg renders without a display; set per figure (not matplotlib.use) so
    # importing this module never changes the backend of a host program.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(confusion, cmap="Blues")
    ticks = range(len(CLASSES))
    ax.set_xticks(list(ticks), labels=list(CLASSES))
    ax.set_yticks(list(ticks), labels=list(CLASSES))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Hold-out confusion matrix")
    high = confusion.max() / 2 if confusion.size else 0
    for i in ticks:
        for j in ticks:
            value = int(confusion[i, j])
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > high else "black")
    fig.tight_layout()
    # Fixed metadata keeps the PNG free of a version/time stamp.
    fig.savefig(path, format="png", metadata={"Software": None})


def model_card(meta: Mapping[str, Any], confusion: np.ndarray) -> str:
    metrics = meta["metrics"]
    params = meta["params"]
    versions = meta["versions"]
    header = "| true \\ predicted | " + " | ".join(CLASSES) + " |"
    rule = "|---" * (len(CLASSES) + 1) + "|"
    rows = [f"| {name} | " + " | ".join(str(int(v)) for v in confusion[i]) + " |" for i, name in enumerate(CLASSES)]
    cv = ", ".join(f"{s:.3f}" for s in metrics["cv_scores"])
    lines = [
        "# Model card: Iris classifier",
        "",
        f"- Estimator: `{meta['estimator']}`",
        f"- Model file: `{meta['model_file']}` ({meta['format']}, {meta['size_bytes']} bytes)",
        f"- sha256: `{meta['sha256']}`",
        f"- Created: {meta['created_at']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        "",
        "## Intended use",
        "",
        "Demonstration model for the irismodel-operator: classifies an iris flower",
        "as " + ", ".join(CLASSES) + " from four measurements in centimetres",
        "(" + ", ".join(meta["feature_names"]) + "). Not for any real decision.",
        "",
        "## Training",
        "",
        "The Iris data set bundled with scikit-learn (150 samples, 50 per class),",
        f"stratified split with {params['test_size']:.0%} held out, seed {params['seed']}.",
        "Parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ".",
        "",
        "## Evaluation",
        "",
        f"- Hold-out accuracy: {metrics['holdout_accuracy']:.3f}",
        f"- {len(metrics['cv_scores'])}-fold cross-validation on the training split: {cv} (mean {metrics['cv_mean']:.3f})",
        *([f"- Check set: `{meta['check_set']['file']}`, the {meta['check_set']['rows']} held-out rows and labels "
           "(sha256 in model.json); the serving container scores the model on them before it takes traffic"]
          if meta.get("check_set") else []),
        "",
        header,
        rule,
        *rows,
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "## Limitations",
        "",
        "150 samples from one study; measurements outside the ranges seen in",
        "training still get a confident answer. Loading the joblib file runs",
        "pickle: only load artifacts whose sha256 you trust (the skops format",
        "avoids arbitrary code execution).",
        "",
    ]
    return "\n".join(lines)
