"""The rankings of the retrieval examples against a slow loop, and the grids drawn from them."""

import matplotlib
import torch

from catride_core.attacks.examples import gather_images
from catride_core.report import examples as example_figures
from catride_core.retrieval.examples import candidate_rankings, query_rankings


def slow_top_k(query, gallery, k, own):
    """Sorted distances, the query's own item dropped by index."""
    distances = [(float(torch.dist(query, item)), i) for i, item in enumerate(gallery) if i != own]
    return [i for _, i in sorted(distances)[:k]]


def toy(n=12, dim=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    gallery = torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=1)
    labels = torch.arange(n) % 3
    return gallery, labels, generator


def test_query_rankings_are_the_slow_loop_before_and_after():
    gallery, labels, generator = toy()
    queries = torch.tensor([0, 5, 7])
    adversarial = torch.randn(3, 4, generator=generator)
    lists = query_rankings(gallery, labels, queries, adversarial, k=4)
    for row, query in enumerate(queries):
        assert lists.before[row].tolist() == slow_top_k(gallery[query], gallery, 4, int(query))
        assert lists.after[row].tolist() == slow_top_k(adversarial[row], gallery, 4, int(query))
        assert lists.correct_after[row].tolist() == [bool(labels[i] == labels[query]) for i in lists.after[row]]


def test_candidate_rankings_move_one_candidate_at_a_time():
    gallery, labels, _ = toy()
    candidates, targets = torch.tensor([1, 2]), torch.tensor([6, 9])
    # candidate 1 moved onto its target query's embedding (first place); candidate 2 sent far away (last place)
    adversarial = torch.stack([gallery[6] * 0.999, -gallery[9] * 5])
    moved = candidate_rankings(gallery, labels, candidates, adversarial, targets, k=3)
    assert moved.rank_after.tolist() == [1, 11]  # 11 items in the target's list (12 less itself)
    for row, (candidate, target) in enumerate(zip(candidates.tolist(), targets.tolist())):
        clean_list = slow_top_k(gallery[target], gallery, 11, target)
        assert moved.rank_before[row] == clean_list.index(candidate) + 1
        assert moved.rankings.before[row].tolist() == clean_list[:3]
        perturbed = gallery.clone()
        perturbed[candidate] = adversarial[row]
        assert moved.rankings.after[row].tolist() == slow_top_k(perturbed[target], perturbed, 3, target)
    assert moved.rankings.after[0, 0] == 1


def test_grids_show_every_image_and_mark_the_results():
    gallery, labels, generator = toy()
    images = torch.rand(12, 1, 6, 6, generator=generator)
    dataset = torch.utils.data.TensorDataset(images, labels)
    queries = torch.tensor([0, 4])
    lists = query_rankings(gallery, labels, queries, gallery[[3, 8]], k=3)
    figure = example_figures.query_grid(images[queries], images[queries] * 0.9, gather_images(dataset, lists.before),
                                        gather_images(dataset, lists.after), lists, labels, queries, "toy", 4.0)
    shown = [a for a in figure.axes if a.get_images()]
    assert len(shown) == 2 * 2 * (1 + 3)  # per row: the query clean and attacked, 3 results of each
    insets = [inset for a in shown for inset in a.child_axes if inset.get_images()]
    assert len(insets) == 2  # the perturbation, in each attacked query
    # the first clean result of query 0 is framed by whether it shares the query's class
    first = next(a for a in figure.axes if a.get_title() == f"#1 class {int(labels[lists.before[0, 0]])}")
    expected = example_figures.CORRECT if lists.correct_before[0, 0] else example_figures.WRONG
    assert matplotlib.colors.to_hex(first.spines["top"].get_edgecolor()) == expected
    matplotlib.pyplot.close(figure)

    moved = candidate_rankings(gallery, labels, queries, gallery[[3, 8]] * 0.99, torch.tensor([3, 8]), k=3)
    figure = example_figures.candidate_grid(
        gather_images(dataset, torch.tensor([3, 8])), images[queries], images[queries] * 0.9,
        gather_images(dataset, moved.rankings.before), gather_images(dataset, moved.rankings.after), moved, labels,
        queries, torch.tensor([3, 8]), "toy", 4.0)
    titles = [a.get_title() for a in figure.axes]
    assert titles.count("#1 candidate") == 2  # moved onto its target, each candidate leads the list after
    assert any(t.endswith("now at #1") for t in titles)
    matplotlib.pyplot.close(figure)
