"""The gain a user can expect from one search: a row of ``bench/quality.py`` searched with
several search seeds (the row itself is seed 0; ``ROW-searchK`` seed K), each search's final
network trained over the same training seeds. Per search, searched − original and − uniform
paired by training seed; over the searches, their mean, the spread between them (sample
std) and a conservative SE (``across``), and the best search, labelled as chosen after the
fact. Also each search's cost
in final trainings: its iterations' seconds over one from-scratch training of its final
network with the comparison's recipe (the mean over the training seeds; one thread each,
on the same machine, not always under the same load: see each row's hardware).

    .venv/bin/python bench/search_seeds.py ROW [ROW ...]

writes ``bench/results/search_seeds.json`` and ``.md`` (every row given, replacing those
rows; the others kept).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def training_seconds(name: str) -> float:
    """Mean seconds of one from-scratch training of the row's searched network."""
    records = sorted((RESULTS / "runs" / name / "compare").glob("searched-seed*.json"))
    return statistics.fmean(json.loads(path.read_text())["seconds"] for path in records)


def per_search(rows: dict, name: str) -> dict:
    row = rows[name]
    return {
        "name": name,
        "search_seed": row.get("search_seed", 0),
        "training_seeds": row["seeds"],
        "searched_minus_original": row["searched_minus_original"],
        "searched_minus_uniform": row["searched_minus_uniform"],
        "searched_macs": row["networks"]["searched"]["macs"],
        "searched_params": row["networks"]["searched"]["params"],
        "macs_ratio": row["networks"]["searched"]["macs"] / row["networks"]["original"]["macs"],
        "params_ratio": row["networks"]["searched"]["params"] / row["networks"]["original"]["params"],
        "search_seconds": row["search_seconds"],
        "search_in_trainings": row["search_seconds"] / training_seconds(name),
    }


def across(searches: list[dict], key: str) -> dict:
    """The mean over searches of their gains, the spread between searches, and an SE that
    counts both noises: the spread's (search to search, with their own training seeds'
    noise) and the training seeds' noise of the search-averaged gain, which the spread
    misses where the searches share the other network's trainings. Conservative: each
    search's own training noise enters both terms."""
    gains = [search[key]["mean"] for search in searches]
    per_seed = [
        statistics.fmean(values) for values in zip(*(s[key]["per_seed"] for s in searches), strict=True)
    ]
    spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
    over_seeds = statistics.stdev(per_seed) / math.sqrt(len(per_seed))
    return {
        "mean": statistics.fmean(gains),
        "between_searches_std": spread if len(gains) > 1 else None,
        "se": math.sqrt(spread**2 / len(gains) + over_seeds**2),
        "se_training_seeds": over_seeds,
        "per_search": gains,
    }


def search_names(rows: dict, row: str) -> list[str]:
    """The row (search seed 0) and its reseeded searches ``ROW-searchK`` among ``rows``."""
    return [row] + sorted(name for name in rows if re.fullmatch(rf"{re.escape(row)}-search\d+", name))


def summarised(rows: dict, row: str) -> dict:
    searches = [per_search(rows, name) for name in search_names(rows, row)]
    if len({tuple(search["training_seeds"]) for search in searches}) > 1:
        raise SystemExit(f"{row}: its searches' networks were trained over different seeds")
    best = max(searches, key=lambda search: search["searched_minus_original"]["mean"])
    return {
        "row": row,
        "searches": searches,
        "searched_minus_original": across(searches, "searched_minus_original"),
        "searched_minus_uniform": across(searches, "searched_minus_uniform"),
        "best_search": best["name"],
        "search_in_trainings": [search["search_in_trainings"] for search in searches],
    }


def span(searches: list[dict], key: str) -> str:
    low, high = (f"{bound([search[key] for search in searches]):.2f}" for bound in (min, max))
    return low if low == high else f"{low}–{high}"


def table(summaries: dict) -> str:
    def gain(values: dict) -> str:
        if values["between_searches_std"] is None:
            return f"{values['mean']:+.2f} ± {values['se']:.2f} (one search)"
        return (
            f"{values['mean']:+.2f} ± {values['se']:.2f} (spread {values['between_searches_std']:.2f}; "
            + ", ".join(f"{value:+.2f}" for value in values["per_search"])
            + ")"
        )

    lines = [
        "| row | searches (seeds) | searched − original: mean over searches ± SE (spread; each) "
        "| searched − uniform | best search (chosen after the fact): − original "
        "| search in final trainings | MACs; params × the original's |",
        "|---|---|---|---|---|---|---|",
    ]
    for summary in summaries.values():
        best = next(s for s in summary["searches"] if s["name"] == summary["best_search"])
        best_gain = best["searched_minus_original"]
        lines.append(
            f"| `{summary['row']}` | {len(summary['searches'])} "
            f"({', '.join(str(s['search_seed']) for s in summary['searches'])}) | "
            f"{gain(summary['searched_minus_original'])} | {gain(summary['searched_minus_uniform'])} | "
            f"seed {best['search_seed']}: {best_gain['mean']:+.2f} ± {best_gain['se']:.2f} | "
            + ", ".join(f"{value:.2f}" for value in summary["search_in_trainings"])
            + f" | {span(summary['searches'], 'macs_ratio')}; {span(summary['searches'], 'params_ratio')} |"
        )
    return "\n".join(lines)


def headline(summary: dict) -> str:
    """What the README's first lines quote of a row: the mean over searches of searched −
    original with its SE (and the ratio, from unrounded values), each search's gain, what the
    searched networks cost against the original in the measure the budget does not hold, and
    what a search cost in final trainings."""
    gain, searches = summary["searched_minus_original"], summary["searches"]
    budget = json.loads((RESULTS / "runs" / summary["row"] / "config.json").read_text())["budget"]
    price = (
        f"at {span(searches, 'macs_ratio')}× its MACs"
        if budget == "params"
        else f"with {span(searches, 'params_ratio')} of its parameters"
    )
    each = (
        "one search"
        if len(searches) == 1
        else f"{len(searches)} searches: " + ", ".join(f"{value:+.2f}" for value in gain["per_search"])
    )
    ratio = gain["mean"] / gain["se"]
    figures = f"{gain['mean']:+.2f} ± {gain['se']:.2f} points over the original ({ratio:.1f} SE"
    return (  # minus signs as prose writes them
        f"{figures}{', not resolved' if abs(ratio) < 2 else ''}; {each})".replace("-", "−")
        + f", at equal {'MACs' if budget == 'macs' else 'parameters'}, {price}, "
        f"{span(searches, 'search_in_trainings')} final trainings per search"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", help="rows of bench/quality.py searched with several seeds")
    args = parser.parse_args()
    rows = json.loads((RESULTS / "quality.json").read_text())
    path = RESULTS / "search_seeds.json"
    summaries = json.loads(path.read_text()) if path.exists() else {}
    summaries |= {row: summarised(rows, row) for row in args.rows}
    path.write_text(json.dumps(summaries, indent=1) + "\n")
    (RESULTS / "search_seeds.md").write_text(table(summaries) + "\n")
    print(table(summaries))


if __name__ == "__main__":
    main()
