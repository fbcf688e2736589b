"""The retrieval example grids: a few rankings before and after an attack, drawn from saved tensors."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from catride_core.retrieval.examples import CandidateRankings, Rankings

#: frame colours: a result of the query's class, one of another class, the attacked candidate
CORRECT, WRONG, CANDIDATE = "#2ca02c", "#d62728", "#1f77b4"


def _show(axis: Any, image: Tensor, frame: str | None = None, title: str = "") -> None:
    """One image (C, H, W in [0, 1]) without ticks, framed in ``frame``'s colour."""
    picture = image.detach().cpu().clamp(0, 1)
    if picture.shape[0] == 1:
        axis.imshow(picture[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        axis.imshow(picture.permute(1, 2, 0).numpy())
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_color(frame)
            spine.set_linewidth(3)
    axis.set_title(title, fontsize=7)


def _inset(axis: Any, clean: Tensor, adversarial: Tensor, amplify: float) -> None:
    """The perturbation, 0.5 + amplify x (adversarial - clean), in a small inset of the adversarial image."""
    inset = axis.inset_axes([0.58, 0.58, 0.42, 0.42])
    _show(inset, 0.5 + amplify * (adversarial - clean), frame="white")


def _grid(rows: int, top_k: int) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # files only: reports are rendered without a display
    import matplotlib.pyplot as plt

    columns = 2 * (top_k + 1) + 1  # query + results, a gap, adversarial image + results
    figure, axes = plt.subplots(rows, columns, figsize=(1.05 * columns, 1.45 * rows + 1.0), dpi=120, squeeze=False,
                                gridspec_kw={"width_ratios": [1] * (top_k + 1) + [0.25] + [1] * (top_k + 1)})
    for axis in axes[:, top_k + 1]:
        axis.axis("off")
    return figure, axes


def _results(axes: Any, images: Tensor, indices: Tensor, correct: Tensor, labels: Tensor,
             candidate: int | None = None, candidate_image: Tensor | None = None) -> None:
    """A ranked list, framed by class; the attacked candidate (shown as ``candidate_image`` if given) in its own colour."""
    for place, (axis, image, index, hit) in enumerate(zip(axes, images, indices, correct), start=1):
        is_candidate = candidate is not None and int(index) == candidate
        frame = CANDIDATE if is_candidate else (CORRECT if hit else WRONG)
        name = "candidate" if is_candidate else f"class {int(labels[index])}"
        shown = candidate_image if is_candidate and candidate_image is not None else image
        _show(axis, shown, frame, f"#{place} {name}")


def _legend(figure: Any, *extra: tuple[str, str]) -> None:
    from matplotlib.patches import Patch

    entries = [(CORRECT, "same class as the query"), (WRONG, "another class"), *extra]
    figure.legend(handles=[Patch(edgecolor=c, facecolor="none", linewidth=2, label=t) for c, t in entries],
                  loc="lower center", ncol=len(entries), fontsize=8, frameon=False)


def query_grid(
    clean: Tensor, adversarial: Tensor, results_before: Tensor, results_after: Tensor, rankings: Rankings,
    labels: Tensor, queries: Tensor, title: str, amplify: float,
) -> Any:
    """Each query and its top-k clean (left) and under attack (right), the perturbation amplified in an inset.

    Args:
        clean: the example queries. Shape: (Q, C, H, W)
        adversarial: the same queries perturbed. Shape: (Q, C, H, W)
        results_before: images of ``rankings.before``. Shape: (Q, K, C, H, W)
        results_after: images of ``rankings.after``. Shape: (Q, K, C, H, W)
        rankings: the lists (``retrieval.examples.query_rankings``).
        labels: classes of the test split. Shape: (N,)
        queries: gallery slots of the queries. Shape: (Q,)
        title: the figure's title (model, attack, eps).
        amplify: factor of the perturbation inset.

    Returns:
        a matplotlib Figure.
    """
    top_k = rankings.before.shape[1]
    figure, axes = _grid(len(queries), top_k)
    for row, query in enumerate(queries):
        left, right = axes[row, : top_k + 1], axes[row, top_k + 2 :]
        _show(left[0], clean[row], title=f"query, class {int(labels[query])}")
        _results(left[1:], results_before[row], rankings.before[row], rankings.correct_before[row], labels)
        _show(right[0], adversarial[row], title="attacked query")
        _inset(right[0], clean[row], adversarial[row], amplify)
        _results(right[1:], results_after[row], rankings.after[row], rankings.correct_after[row], labels)
    figure.suptitle(f"{title}\nleft: clean query and its top-{top_k}; right: the attacked query "
                    f"(inset: perturbation x{amplify:g}) and its top-{top_k}", fontsize=9)
    _legend(figure)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    return figure


def candidate_grid(
    target_images: Tensor, candidates_clean: Tensor, candidates_adversarial: Tensor, results_before: Tensor,
    results_after: Tensor, moved: CandidateRankings, labels: Tensor, candidates: Tensor, targets: Tensor,
    title: str, amplify: float,
) -> Any:
    """CA+ / CA-: each target query's top-k with the clean candidate (left), and once it is perturbed (right).

    Args:
        target_images: the target queries. Shape: (Q, C, H, W)
        candidates_clean: the attacked candidates. Shape: (Q, C, H, W)
        candidates_adversarial: the same candidates perturbed. Shape: (Q, C, H, W)
        results_before: images of ``moved.rankings.before``. Shape: (Q, K, C, H, W)
        results_after: clean images of ``moved.rankings.after`` (the candidate is drawn perturbed). Shape: (Q, K, C, H, W)
        moved: the lists and the candidate's places (``retrieval.examples.candidate_rankings``).
        labels: classes of the test split. Shape: (N,)
        candidates: gallery slots of the candidates. Shape: (Q,)
        targets: gallery slot of each candidate's target query. Shape: (Q,)
        title: the figure's title (model, attack, eps).
        amplify: factor of the perturbation inset.

    Returns:
        a matplotlib Figure.
    """
    lists = moved.rankings
    top_k = lists.before.shape[1]
    figure, axes = _grid(len(candidates), top_k)
    for row, (candidate, target) in enumerate(zip(candidates, targets)):
        left, right = axes[row, : top_k + 1], axes[row, top_k + 2 :]
        _show(left[0], target_images[row],
              title=f"target query, class {int(labels[target])}\ncandidate at #{int(moved.rank_before[row])}")
        _results(left[1:], results_before[row], lists.before[row], lists.correct_before[row], labels, int(candidate))
        _show(right[0], candidates_adversarial[row], CANDIDATE,
              f"candidate, class {int(labels[candidate])}\nnow at #{int(moved.rank_after[row])}")
        _inset(right[0], candidates_clean[row], candidates_adversarial[row], amplify)
        _results(right[1:], results_after[row], lists.after[row], lists.correct_after[row], labels, int(candidate),
                 candidates_adversarial[row])
    figure.suptitle(f"{title}\nleft: a target query and its top-{top_k}; right: the perturbed candidate "
                    f"(inset: perturbation x{amplify:g}) and the same query's top-{top_k}", fontsize=9)
    _legend(figure, (CANDIDATE, "the attacked candidate"))
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    return figure
