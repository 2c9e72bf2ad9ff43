"""The README's code runs as copied: each ```python block, in a fresh interpreter, in an
empty folder, on the Fashion-MNIST the README's set-up installs; every ``netadjust`` line
of its shell blocks is accepted by the parser, and the own-model commands run; the figures
it quotes over search seeds are what the bench script computes from the committed results."""

import importlib
import json
import math
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import in_process
from netadjust.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.strip().splitlines()[0][:40])
def test_each_python_block_of_the_readme_runs_as_copied(block, tmp_path, fashion_dir):
    result = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]


SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
TINY_TRAINING = ["--epochs", "1", "--train-limit", "256", "--test-limit", "128"]
TINY = {"search": ["--iterations", "1", "--val-limit", "128", *TINY_TRAINING], "train": TINY_TRAINING}


def netadjust_lines(block: str) -> list[list[str]]:
    """The block's ``netadjust`` commands as argument lists (comments dropped; a
    ``torchrun … -m netadjust`` prefix removed)."""
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if "netadjust" in words:
            commands.append(words[words.index("netadjust") + 1 :])
    return commands


def test_every_command_line_of_the_readme_is_accepted_by_the_parser():
    commands = [words for block in SHELL_BLOCKS for words in netadjust_lines(block) if "--help" not in words]
    assert len(commands) >= 20
    parser = build_parser()
    for words in commands:
        args, unknown = parser.parse_known_args(words)  # a UserError (bad flag or value) fails the test
        assert not unknown, f"netadjust {' '.join(words)}: {unknown} unknown"


def test_the_own_model_commands_run_as_copied_on_tiny_settings(tmp_path, fashion_dir):
    """The ``mine.py`` block written where the README says, then each command of the block
    that uses it, the training ones cut to a few hundred images."""
    (factory,) = [block for block in BLOCKS if block.startswith("# mine.py")]
    (tmp_path / "mine.py").write_text(factory)
    (block,) = [block for block in SHELL_BLOCKS if "mine.py:net" in block]
    for words in netadjust_lines(block):
        result = in_process(*words, *TINY.get(words[0], []), cwd=tmp_path)  # the CLI's own main()
        assert result.returncode == 0, f"netadjust {' '.join(words)}: {result.stderr[-2000:]}"
    assert (tmp_path / "runs/mine/final.json").exists()


def bench_script(name: str):
    """A script of bench/ as a module: the README quotes what it computes."""
    if str(README.parent / "bench") not in sys.path:
        sys.path.insert(0, str(README.parent / "bench"))
    return importlib.import_module(name)


def readme_text() -> str:
    """The README on one line: a quoted figure may be wrapped anywhere."""
    return " ".join(README.read_text().split())


def test_the_readmes_figures_over_search_seeds_are_the_scripts_from_the_committed_results():
    # bench/search_seeds.py recomputed from the committed raw results gives its committed
    # summary; the README's Results lead with its table, as the script writes it
    search_seeds = bench_script("search_seeds")

    rows = json.loads((search_seeds.RESULTS / "quality.json").read_text())
    committed = json.loads((search_seeds.RESULTS / "search_seeds.json").read_text())
    assert committed == json.loads(json.dumps({row: search_seeds.summarised(rows, row) for row in committed}))
    results = README.read_text().split("## Results", 1)[1]
    assert results.lstrip().split("\n\n")[1].strip() == search_seeds.table(committed)
    assert (search_seeds.RESULTS / "search_seeds.md").read_text().strip() == search_seeds.table(committed)


def test_the_readmes_first_lines_quote_every_row_over_search_seeds():
    # each row of bench/search_seeds.py's summary, as its headline() words it (the SE ratio
    # from unrounded values, "not resolved" under 2 SE), before the install section
    search_seeds = bench_script("search_seeds")

    summaries = json.loads((search_seeds.RESULTS / "search_seeds.json").read_text())
    first_lines = " ".join(README.read_text().split("## Install", 1)[0].split())
    assert len(summaries) >= 3
    for summary in summaries.values():
        assert search_seeds.headline(summary) in first_lines, summary["row"]


def test_the_readmes_figures_of_the_hand_designed_starts_are_the_scripts():
    quality = bench_script("quality")

    rows = json.loads((quality.RESULTS / "quality.json").read_text())
    assert quality.hand_designed_figures(rows) in readme_text()


def test_the_readmes_zoo_figures_are_the_coverage_records():
    zoo_coverage = bench_script("zoo_coverage")

    text = readme_text()
    for phrase in zoo_coverage.readme_figures():
        assert phrase in text, phrase


def test_the_readmes_everyday_table_is_the_scripts():
    # every cell, the search's time in final trainings and the trainings' minutes included
    quality = bench_script("quality")

    rows = json.loads((quality.RESULTS / "quality.json").read_text())
    assert quality.readme_table(rows) in README.read_text()
    text = readme_text()
    for phrase in quality.readme_row_figures(rows):
        assert phrase in text, phrase


def test_the_readmes_counterparts_table_and_its_figures_are_the_scripts():
    counterparts_table = bench_script("counterparts_table")

    assert counterparts_table.table() in README.read_text()
    text = readme_text()
    for phrase in counterparts_table.figures() + counterparts_table.zoo_figures():
        assert phrase in text, phrase
    # MobileNetV3-Small and MobileNetV2: Slimming, DepGraph; 2 layers each
    assert len(counterparts_table.zoo_figures()) == 16
    peers = {
        method: json.loads((README.parent / f"bench/results/{method}_peer.json").read_text())
        for method in ("slimming", "depgraph")
    }
    for row in ("tv-mobilenet-v3-small-a0.5", "tv-mobilenet-v2-x0.5-default-lr0.05"):
        figures = [f"{100 * peers[method][row]['searched_minus_pruned']:.2f} points" for method in peers]
        assert "Network Slimming's network by {} and DepGraph's by {} (one search".format(*figures) in text


def test_the_readmes_figures_over_more_training_seeds_are_the_committed_summary():
    more_seeds = bench_script("more_seeds")

    rows = json.loads((more_seeds.RESULTS / "more_seeds.json").read_text())
    row = rows["resnet18-x0.25-a0.5-step-current"]
    assert row == json.loads(json.dumps(more_seeds.summarise(row["name"])))  # from the raw trainings
    text = readme_text()
    for key in ("searched_minus_original", "searched_minus_original_fresh"):
        assert f"{100 * row[key]['mean']:+.2f} ± {100 * row[key]['se']:.2f}" in text, key


def test_the_readmes_cheap_search_figures_are_the_inheritance_summary():
    inherit = bench_script("inherit")

    summary = json.loads((inherit.RESULTS / "inherit.json").read_text())
    cheap = next(o for o in summary["over_searches"] if o["row"] == "resnet18-x0.25-a0.5-params")
    entries = [  # recomputed from the raw runs
        inherit.compared(row, inherit.RUNS / f"{row}-inherit{cheap['variant']}") for row in cheap["searches"]
    ]
    assert json.loads(json.dumps(inherit.over_searches(entries))) == [cheap]
    text = readme_text()
    gain, ratios = cheap["minus_original"], cheap["search_in_trainings"]
    assert len(cheap["searches"]) >= 3 and len(cheap["training_seeds"]) >= 5
    assert f"{gain['mean']:+.2f} ± {gain['se']:.2f}" in text
    assert f"{min(ratios):.2f}–{max(ratios):.2f} of one final training" in text
    scratch = json.loads((inherit.RESULTS / "search_seeds.json").read_text())[cheap["row"]][
        "search_in_trainings"
    ]
    assert f"against {min(scratch):.1f}–{max(scratch):.1f} from scratch" in text
    slower = [a / b for a, b in zip(scratch, ratios, strict=True)]  # the same search seeds, in order
    assert f"from scratch (the paper's): {min(slower):.1f}-{max(slower):.1f}x the time" in text


def test_the_inheritance_figures_of_the_docs_are_the_summarys():
    summary = json.loads((README.parent / "bench" / "results" / "inherit.json").read_text())
    docs = {  # on one line, with ASCII minus signs
        name: " ".join((README.parent / "docs" / name).read_text().split()).replace("−", "-")
        for name in ("inherit.md", "results.md")
    }
    for pair in summary["with_minus_without_regulariser"]:
        difference = pair["difference"]
        assert f"{100 * difference['mean']:+.2f} ± {100 * difference['se']:.2f}" in docs["inherit.md"], pair
    cheap = next(o for o in summary["over_searches"] if o["row"] == "resnet18-x0.25-a0.5-params")
    for key in ("minus_original", "minus_recorded"):
        assert f"{cheap[key]['mean']:+.2f} ± {cheap[key]['se']:.2f}" in docs["results.md"], key


def test_the_readmes_mobilenet_learning_rate_figures_are_the_trainings():
    # the 8-epoch trainings of MobileNetV2 x0.5: bench/lr_stability.py's and the default
    # row's original (its comparison's recipe, lr 0.1)
    lr_stability = bench_script("lr_stability")

    records = json.loads(lr_stability.RESULTS.read_text())
    top1 = {lr: [] for lr in ("0.1", "0.05")}
    for key, record in records.items():
        network, setting = key.split("@")
        lr, _, length = setting.split("/")
        if network == "torchvision:mobilenet_v2 x0.5" and length == "8x60000":
            top1[lr].append(record["test_top1"])
    run = lr_stability.RESULTS.parent / "runs" / "tv-mobilenet-v2-x0.5-default"
    compared = json.loads((run / "compare" / "original-seed0.json").read_text())
    assert compared["recipe"]["lr"] == 0.1 and compared["recipe"]["epochs"] == 8
    top1["0.1"].append(compared["test"]["top1"])

    def extent(values: list[float]) -> str:
        return f"{100 * min(values):.2f}–{100 * max(values):.2f}%"

    assert (
        f"to {extent(top1['0.1'])} in {len(top1['0.1'])} 8-epoch trainings, 0.05 to {extent(top1['0.05'])}"
    ).replace("3 8-epoch", "three 8-epoch") in readme_text()


def test_the_mobilenetv3_learning_rate_figures_are_the_trainings():
    # docs/results.md: its 8-epoch trainings at both lrs, with and without the regulariser
    records = json.loads(bench_script("lr_stability").RESULTS.read_text())

    def both(lr: str) -> str:
        top1 = [
            records[f"torchvision:mobilenet_v3_small@{lr}/{regulariser}/8x60000"]["test_top1"]
            for regulariser in ("regulariser", "none")
        ]
        return f"{100 * top1[0]:.2f}% and {100 * top1[1]:.2f}% at {lr}"

    docs = " ".join((README.parent / "docs" / "results.md").read_text().split())
    assert f"{both('0.05')}, {both('0.1')})" in docs


def test_the_zoo_rows_in_docs_are_the_scripts():
    # docs/results.md's zoo section quotes bench/quality.py --details for every compared zoo
    # search, --course for every finished one not yet compared, and bench/lr_stability.py's table
    quality, lr_stability = bench_script("quality"), bench_script("lr_stability")

    docs = (README.parent / "docs" / "results.md").read_text()
    rows = json.loads((quality.RESULTS / "quality.json").read_text())
    zoo = [name for name in quality.SETTINGS if name.startswith("tv-")]
    compared = [name for name in zoo if name in rows]
    searched = [name for name in zoo if name not in rows and (quality.RUNS / name / "final.json").exists()]
    assert compared and searched
    for name in compared:
        assert quality.row_details(rows, name) in docs, name
    for name in searched:
        assert quality.search_course(name) in docs, name
    assert lr_stability.table(json.loads(lr_stability.RESULTS.read_text())) in docs
    original = json.loads(
        (quality.RUNS / "tv-mobilenet-v2-x0.5-default" / "compare" / "original-seed0.json").read_text()
    )
    assert f"reached {100 * original['test']['top1']:.2f}% (seed 0)" in docs


def test_the_precision_figures_of_the_performance_notes_are_the_record():
    precision_speed = bench_script("precision_speed")

    performance = " ".join((README.parent / "docs" / "performance.md").read_text().split())
    for phrase in precision_speed.documented(precision_speed.recorded(precision_speed.RECORD.read_text())):
        assert phrase in performance, phrase


def test_the_tables_of_the_results_notes_are_the_scripts():
    # docs/results.md: the lead rows (the README's table), the hand-designed starts, the L1
    # peer's rows and every counterpart's paragraph, each as its script writes it
    quality, counterparts_table, pruned_peer = (
        bench_script(name) for name in ("quality", "counterparts_table", "pruned_peer")
    )

    docs = (README.parent / "docs" / "results.md").read_text()
    rows = json.loads((quality.RESULTS / "quality.json").read_text())
    assert quality.readme_table(rows) in docs
    assert quality.cifar_table(rows) in docs
    # the uniform network is the start in every hand-designed row but MobileNetV2-small's
    assert [name for name in quality.CIFAR_ROWS if not rows[name]["uniform_is_original"]] == [
        "mobilenetv2-small-x0.25"
    ]
    assert quality.cifar_uniform_figures(rows) in " ".join(docs.split())
    peers = json.loads((pruned_peer.RESULTS / "pruned_peer.json").read_text())
    assert pruned_peer.peer_table(peers, "pruned") in docs
    assert (pruned_peer.RESULTS / "pruned_peer.md").read_text().strip() == pruned_peer.peer_table(
        peers, "pruned"
    )
    for paragraph in counterparts_table.details().split("\n\n"):
        assert paragraph.strip() in docs, paragraph[:60]


def test_the_per_row_tables_of_the_results_notes_are_the_run_directories():
    # each hand-designed row's iterations (from its history.jsonl and final.json) and its
    # networks trained from scratch (from quality.json), as bench/history_tables.py writes them
    history_tables = bench_script("history_tables")

    docs = (README.parent / "docs" / "results.md").read_text()
    rows = json.loads((history_tables.RESULTS / "quality.json").read_text())
    for name, style in history_tables.DOCUMENTED:
        assert history_tables.iteration_table(name, style) in docs, name
    for labels in history_tables.NETWORKS:
        assert history_tables.networks_table(rows, *labels) in docs, labels[0]


def test_the_swing_and_fur_agreement_tables_of_the_results_notes_are_the_scripts():
    oscillation, fur_across_trainings = bench_script("oscillation"), bench_script("fur_across_trainings")

    docs = (README.parent / "docs" / "results.md").read_text()
    assert oscillation.docs_table() in docs
    rows = json.loads((fur_across_trainings.RESULTS / "fur_across_trainings.json").read_text())
    assert fur_across_trainings.docs_table(rows) in docs


def test_the_undone_moves_of_the_results_notes_are_the_scripts():
    undone_moves = bench_script("undone_moves")

    docs = (README.parent / "docs" / "results.md").read_text()
    summaries = [undone_moves.summary(undone_moves.RUNS / name) for name in undone_moves.DEFAULT]
    recorded = "\n".join(summaries)
    assert (undone_moves.RUNS.parent / "undone_moves.txt").read_text().strip() == recorded
    assert recorded in docs


def test_the_step_rules_table_and_the_readmes_figures_of_it_are_the_scripts():
    step_rules, search_seeds = bench_script("step_rules"), bench_script("search_seeds")
    rows = json.loads((search_seeds.RESULTS / "quality.json").read_text())

    docs = (README.parent / "docs" / "results.md").read_text()
    table = step_rules.table()
    assert table.count("`lesser`") == len(step_rules.PAIRS) and table in docs
    differences = step_rules.lesser_minus_initial()
    assert len(differences) == len(step_rules.PAIRS)
    text = readme_text()
    for _, phrase in differences:
        assert phrase in text, phrase
    undone = {
        rule: [
            sum(step_rules.undone(name)[0] for name in search_seeds.search_names(rows, row + suffix))
            for _, row in step_rules.PAIRS
        ]
        for rule, suffix in step_rules.RULES
    }
    phrase = step_rules.undone_phrase(rows)
    assert phrase in text
    # the phrase's counts, in the rows' order, for each rule
    lesser, initial = phrase.removeprefix("undid ").split(" where the reference's step undid ")
    assert lesser.split(" of ")[0].replace(" and ", ", ").split(", ") == [str(n) for n in undone["lesser"]]
    assert initial.replace(" and ", ", ").split(", ") == [str(n) for n in undone["initial"]]


def test_the_undone_moves_of_the_step_rules_section_are_the_scripts():
    step_rules = bench_script("step_rules")

    docs = (README.parent / "docs" / "results.md").read_text()
    block = step_rules.undone_block()
    assert block.count("-lesser") == 9 and block in docs  # three rows, three searches each
    assert step_rules.undone_counts() in " ".join(docs.split())


def test_the_poor_starts_cost_against_the_original_is_the_trainings():
    # docs/results.md: the original 8/16/32 against the poor start 9/20/12, paired by seed
    runs = README.parent / "bench" / "results" / "runs"

    def top1(row: str) -> dict[int, float]:
        records = (json.loads(p.read_text()) for p in (runs / row / "compare").glob("original-seed*.json"))
        return {record["seed"]: 100 * record["test"]["top1"] for record in records}

    original, poor = top1("resnet20-x0.5"), top1("resnet20-poor-start")
    assert sorted(original) == sorted(poor) == [0, 1, 2, 3, 4]
    differences = [original[seed] - poor[seed] for seed in original]
    se = statistics.stdev(differences) / math.sqrt(len(differences))
    mean, spread = statistics.fmean(original.values()), statistics.stdev(original.values())
    docs = " ".join((README.parent / "docs" / "results.md").read_text().split())
    assert (
        f"{mean:.2f} ± {spread:.2f} over the 5 seeds of the resnet20-x0.5 comparison, "
        f"{statistics.fmean(differences):+.2f} ± {se:.2f} paired"
    ) in docs


def test_the_squeezed_head_of_mobilenetv2s_search_2_is_its_final_widths():
    final = json.loads(
        (
            README.parent / "bench/results/runs/tv-mobilenet-v2-x0.5-default-lr0.05-search2/final.json"
        ).read_text()
    )
    head, last = final["widths"]["features.18.0"], final["widths"]["features.17.conv.2"]
    assert f"cut the last 1×1 convolution to {head} channels" in readme_text()
    docs = " ".join((README.parent / "docs" / "results.md").read_text().split())
    original = final["original_widths"]["features.18.0"]
    assert f"(`features.18.0`, {original:,} channels) at {head} and the last block's output at {last}" in docs


def test_the_inheritance_paragraph_of_the_results_notes_is_the_summary():
    summary = json.loads((README.parent / "bench" / "results" / "inherit.json").read_text())
    docs = " ".join((README.parent / "docs" / "results.md").read_text().split())
    paragraph = docs[docs.index("## `--inherit`: fine-tuning between iterations") :]
    rows = {(row["row"].split("-")[1], row["variant"]): row for row in summary["rows"]}

    def pm(difference: dict) -> str:
        return f"{100 * difference['mean']:+.2f} ± {100 * difference['se']:.2f}".replace("-", "−")

    def pair(variant: str, key: str) -> str:
        return f"{pm(rows['x0.5', variant][key])} and {pm(rows['starved', variant][key])}"

    ratios = lambda variant: [f"{rows[start, variant]['ratio']:.2f}" for start in ("x0.5", "starved")]  # noqa: E731
    assert "took **{} and {}** of the from-scratch".format(*ratios("0.25-repeats2-undropped")) in paragraph
    assert f"scored {pair('0.25-repeats2-undropped', 'minus_recorded')} points" in paragraph
    assert (
        f"({pm(rows['starved', '0.25-repeats2-undropped']['minus_original'])} over its original" in paragraph
    )
    recorded = next(entry for entry in summary["scratch_twice"] if entry["row"] == "resnet20-starved-a0.5")
    assert f"from scratch {pm(recorded['recorded_minus_original'])})" in paragraph
    assert (
        f"T = 4: {ratios('0.25-undropped')[0]} of the time, {pair('0.25-undropped', 'minus_recorded')};"
        in paragraph
    )
    assert "`--inherit 0.1 --repeats 2`: {} and {}".format(*ratios("0.1-repeats2-undropped")) in paragraph
    assert (
        f"{pair('0.1-repeats2-undropped', 'minus_recorded')} (the starved start recovered less" in paragraph
    )
    assert f"less, {pm(rows['starved', '0.1-repeats2-undropped']['minus_original'])})" in paragraph
    twice = next(entry for entry in summary["scratch_twice"] if entry["row"] == "resnet20-x0.5-a0.5")
    assert f"differ by as much ({pm(twice['rerun_minus_recorded'])})" in paragraph


def test_every_per_seed_list_of_the_results_notes_is_a_rows_trainings():
    rows = json.loads((README.parent / "bench" / "results" / "quality.json").read_text())
    signed = lambda values: ", ".join(f"{100 * value:+.2f}" for value in values).replace("-", "−")  # noqa: E731
    known = {
        signed([value / 100 for value in row[key]["per_seed"]])
        for row in rows.values()
        for key in ("searched_minus_original", "searched_minus_uniform")
    }
    more = json.loads((README.parent / "bench" / "results" / "more_seeds.json").read_text())
    for row in more.values():  # ten training seeds: searched − original per seed
        known.add(
            signed([s - o for s, o in zip(row["searched"]["top1"], row["original"]["top1"], strict=True)])
        )
    docs = " ".join((README.parent / "docs" / "results.md").read_text().split())
    lists = re.findall(r"per seed ((?:[+−-]\d+\.\d\d, )+[+−-]\d+\.\d\d)", docs)
    assert len(lists) >= 19
    for values in lists:
        assert values.replace("-", "−") in known, values


def test_the_depthwise_rows_swing_and_cost_in_the_results_notes_are_its_run():
    run = README.parent / "bench" / "results" / "runs" / "mobilenetv2-small-x0.25"
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    final = json.loads((run / "final.json").read_text())
    course = [record["widths"]["stage7.out"] for record in history] + [final["widths"]["stage7.out"]]
    row = json.loads((README.parent / "bench" / "results" / "quality.json").read_text())[
        "mobilenetv2-small-x0.25"
    ]
    searched, original = row["networks"]["searched"], row["networks"]["original"]
    docs = " ".join((README.parent / "docs" / "results.md").read_text().split())
    assert f"(the final 1×1 output width {course[0]} → {course[-1]}, a step of half its" in docs
    assert f"swinging it {' → '.join(map(str, course))})" in docs
    rate = searched["images_per_second"] / original["images_per_second"]
    assert (
        f"the searched network has {round(searched['params'] / 1000)}k parameters against "
        f"{round(original['params'] / 1000)}k and trains at {rate:.2f} of the original's rate" in docs
    )


def test_the_cifar_allocations_bullets_quote_their_runs():
    from netadjust.outcome import reversals
    from netadjust.rundir import read_history

    results = README.parent / "bench" / "results"
    rows = json.loads((results / "quality.json").read_text())
    docs = " ".join((README.parent / "docs" / "results.md").read_text().split())
    top1 = lambda name, network: rows[name]["networks"][network]["top1"]  # noqa: E731
    starved = rows["resnet20-starved-a0.5"]
    cost = 100 * (
        rows["resnet20-x0.5"]["networks"]["original"]["top1_mean"]
        - starved["networks"]["original"]["top1_mean"]
    )
    assert f"recovers {starved['searched_minus_original']['mean']:.2f} of the {cost:.2f} points" in docs
    plain = [100 * top1(name, "searched")[1] for name in ("plain20-x0.5", "plain20-x0.5-a0.5")]
    assert f"seed 1 trained badly ({plain[0]:.2f}% and {plain[1]:.2f}%; the original's seed 1: " in docs
    assert f"the original's seed 1: {100 * top1('plain20-x0.5', 'original')[1]:.2f}%)" in docs
    speeds = json.loads((results / "runs" / "resnet20-x0.5-a0.5-10ep" / "compare.json").read_text())
    searched, original = (speeds[name]["train_images_per_s"] for name in ("searched", "original"))
    assert (
        f"at {searched / original:.2f} of the original's rate on this CPU "
        f"({searched:,.0f} against {original:,.0f}" in docs
    )
    for name, phrase in (
        ("resnet20-x0.5-a0.5-kdecay", "undid {} of its {} moves ({:.1f} by chance)"),
        ("resnet20-x0.5-a0.25-it8", "undid {} of its {} moves ({:.0f} by chance;"),
        ("resnet20-x0.5-a0.5-local", "{} of {} moves undone against {:.0f})"),
    ):
        assert phrase.format(*reversals(read_history(results / "runs" / name))) in docs, name


def test_mobilenetv2s_search_2_and_its_rerun_under_the_floor_of_cuts_are_their_runs():
    runs = README.parent / "bench" / "results" / "runs"
    search, rerun = (
        runs / f"tv-mobilenet-v2-x0.5-default-lr0.05-search2{tail}" for tail in ("", "-cut-floor")
    )
    rows = json.loads((README.parent / "bench" / "results" / "quality.json").read_text())
    failed = rows["tv-mobilenet-v2-x0.5-default-lr0.05-search2"]["networks"]["searched"]["top1_mean"]
    assert f"its network did not train ({100 * failed:.2f}%)" in readme_text()
    docs = " ".join((README.parent / "docs" / "results.md").read_text().split())
    losses = [
        epoch["loss"]
        for seed in range(5)
        for epoch in json.loads((search / "compare" / f"searched-seed{seed}.json").read_text())["train"][2:]
    ]
    assert f"stayed between {min(losses):.2f} and {max(losses):.2f} from the third epoch on" in docs
    histories = [(run / "history.jsonl").read_text().splitlines() for run in (search, rerun)]
    keys = ("widths", "grown", "shrunk", "val")
    for before, after in zip(*histories, strict=True):
        before, after = json.loads(before), json.loads(after)
        assert all(before[key] == after[key] for key in keys)
    finals = [json.loads((run / "final.json").read_text())["widths"] for run in (search, rerun)]
    for name in ("features.17.conv.2", "features.18.0"):
        assert f"`{name}` at {finals[1][name]} (not {finals[0][name]})" in docs
    floor = rows["tv-mobilenet-v2-x0.5-default-lr0.05-search2-cut-floor"]
    gain, network = floor["searched_minus_original"], floor["networks"]["searched"]
    ratio = gain["mean"] / gain["se"]
    phrase = (
        f"ended with those layers at 10 channels and {gain['mean']:+.2f} ± {gain['se']:.2f} points over the "
        f"original ({ratio:.1f} SE{', not resolved' if abs(ratio) < 2 else ''}; "
        f"its network {100 * network['top1_mean']:.2f}% over 5 seeds)"
    )
    assert phrase.replace("-", "−") in readme_text()


def test_the_default_lr_paragraph_of_the_results_notes_is_its_row():
    quality = bench_script("quality")

    rows = json.loads((quality.RESULTS / "quality.json").read_text())
    docs = (README.parent / "docs" / "results.md").read_text()
    for search in ("", "-search1", "-search2"):
        assert quality.row_details(rows, f"resnet18-x0.25-params-default-lr0.05{search}") in docs
    summary = json.loads((quality.RESULTS / "search_seeds.json").read_text())[
        "resnet18-x0.25-params-default-lr0.05"
    ]
    gain, ratios = summary["searched_minus_original"], summary["search_in_trainings"]
    spread = gain["between_searches_std"]
    assert (
        f"{gain['mean']:+.2f} ± {gain['se']:.2f} over the original (spread {spread:.2f}), "
        f"each search {min(ratios):.2f}–{max(ratios):.2f}"
    ) in " ".join(docs.split())
    at_05, at_01 = (
        rows[name]["networks"]["original"]
        for name in ("resnet18-x0.25-params-default-lr0.05", "resnet18-x0.25-quick")
    )
    assert f"scored {quality.pm(at_05)} against {quality.pm(at_01)} at lr 0.1" in " ".join(docs.split())


def test_the_readmes_default_lr_is_the_presets():
    from netadjust.presets import DEFAULT_PRESET, PRESETS

    first_lines = " ".join(README.read_text().split("## Install", 1)[0].split())
    assert f"The default's lr is {PRESETS[DEFAULT_PRESET]['lr']:g} (0.1 before 2026-12-07)" in first_lines


def test_the_mobilenetv3_default_rows_original_figures_are_the_rows():
    quality = bench_script("quality")

    rows = json.loads((quality.RESULTS / "quality.json").read_text())
    at_05, at_01 = (
        rows[name]["networks"]["original"]
        for name in ("tv-mobilenet-v3-small-default", "tv-mobilenet-v3-small-a0.5")
    )
    docs = " ".join((README.parent / "docs" / "results.md").read_text().split())
    assert f"Its original at lr 0.05 scored {quality.pm(at_05)} against {quality.pm(at_01)} at lr 0.1" in docs
    readme = " ".join(README.read_text().split())
    assert (
        f"MobileNetV3-Small's {100 * at_05['top1_mean']:.2f}% against {100 * at_01['top1_mean']:.2f}%)"
        in readme
    )


def test_the_figures_around_the_new_default_and_the_zoo_counterpart_are_the_records():
    results = README.parent / "bench" / "results"
    docs = " ".join((README.parent / "docs" / "results.md").read_text().split())
    readme = " ".join(README.read_text().split())
    # DepGraph on MobileNetV3-Small: the floors it held, and its first attempt without them
    floors = json.loads((results / "runs/tv-mobilenet-v3-small-a0.5/compare/depgraph.json").read_text())[
        "cut_floors"
    ]
    at = {floor: sum(value == floor for value in floors.values()) for floor in (10, 3)}
    assert floors["features.12.0"] == floors["classifier.0"] == 10 and len(floors) == at[10] + at[3]
    assert f"{at[10]} widths at least 10 channels, the last 1×1 convolution" in docs
    assert f"and {at[3]} at least 3)" in docs
    before = [
        json.loads(
            (results / f"before_cut_floor/tv-mobilenet-v3-small-a0.5/depgraph-seed{seed}.json").read_text()
        )
        for seed in (0, 1)
    ]
    top1 = [100 * record["test"]["top1"] for record in before]
    loss = [record["train"][-1]["loss"] for record in before]
    assert (
        f"to {top1[0]:.2f}% and {top1[1]:.2f}% (seeds 0 and 1, training loss {loss[0]:.2f} and "
        f"{loss[1]:.2f} after 8 epochs)"
    ) in docs
    # the paused training of the default's MobileNetV3-Small search 1, and the one kept
    search1 = "tv-mobilenet-v3-small-default-search1"
    paused = json.loads((results / "paused" / search1 / "searched-seed1.json").read_text())
    kept = json.loads((results / "runs" / search1 / "compare" / "searched-seed1.json").read_text())
    assert paused["test"]["top1"] == kept["test"]["top1"] and paused["widths"] == kept["widths"]
    assert f"the second gave the same {100 * kept['test']['top1']:.2f}%)" in docs
    # the from-scratch equal-parameter row the default is set against, and the originals at each lr
    scratch = json.loads((results / "search_seeds.json").read_text())["resnet18-x0.25-a0.5-params"]
    gain, ratios = scratch["searched_minus_original"], scratch["search_in_trainings"]
    assert (
        f"search's {gain['mean']:+.2f} ± {gain['se']:.2f} at {min(ratios):.1f}–{max(ratios):.1f} trainings"
        in docs
    )
    rows = json.loads((results / "quality.json").read_text())
    at_05, at_01 = (
        100 * rows[name]["networks"]["original"]["top1_mean"]
        for name in ("resnet18-x0.25-params-default-lr0.05", "resnet18-x0.25-quick")
    )
    assert f"ResNet-18's {at_05:.2f}% against {at_01:.2f}% at 0.1" in readme
