"""The Network Adjustment loop: train -> FUR -> adjust -> rescale, repeated. One iteration
is ``step``; the run directory it writes is ``rundir``'s."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .adjust import (
    Floor,
    adjust,
    check_floor,
    excess,
    filled,
    layers_to_move,
    rescale,
    widest_within,
    within_budget,
)
from .config import BUDGET_TOLERANCE, UNITS, SearchConfig, Widths
from .cost import measure, model_cost, sensitivities
from .cuts import floor_line, least_widths
from .data import PreparedData, model_spec_for, prepare_data
from .distributed import SINGLE, Processes
from .errors import UserError
from .fur import estimate_fur, stability
from .inherit import inherit_weights
from .latency import LATENCY_FILL_SLACK, LATENCY_TOLERANCE, LatencyModel, latency_model
from .outcome import LOW_STABILITY, duration, outcome_lines, widths_table
from .planning import (
    iteration_recipe,
    regulariser_progress,
    settings_record,
    starting_widths,
    training_epochs,
    with_fur_precision,
)
from .rundir import (
    FinalResult,
    IterationRecord,
    append_record,
    completed_iterations,
    load_checkpoint,
    provenance,
    save_checkpoint,
    write_final,
)
from .scalars import ScalarLog, require_tensorboard
from .spaces import ModelSpec, build, network_name, width_grid
from .store import check_writable, user_path, write_json
from .train import evaluate, fit, resolve_device
from .wording import plural


def cost_text(value: int, budget: str) -> str:
    """A cost in the budget's measure for a person (latency is held in nanoseconds)."""
    return f"{value / 1e6:.3f} ms" if budget == "latency" else f"{value:,} {UNITS[budget]}"


@dataclass
class Search:
    """What every iteration of one search shares."""

    config: SearchConfig
    spec: ModelSpec  # with the dataset's classes, channels and image size
    data: PreparedData
    initial: Widths
    out: Path
    scalars: ScalarLog
    log: Callable[[str], None]
    processes: Processes
    latency: LatencyModel | None  # with --budget latency
    floor: Floor  # the least width of each: --min-width, or more for a cut (``cuts``)

    def cost(self, widths: Widths) -> int:
        """The budget's measure of ``widths`` (latency: nanoseconds, timed beside the original)."""
        if self.latency is not None:
            return self.latency.nanoseconds(widths)
        return measure(self.spec, widths, self.config.budget)

    def sensitivities(self, widths: Widths) -> dict[str, float]:
        if self.latency is not None:
            return self.latency.sensitivities(widths)
        return sensitivities(self.spec, widths, self.config.budget)

    @property
    def tolerance(self) -> float:
        return LATENCY_TOLERANCE if self.latency is not None else BUDGET_TOLERANCE


def timed_budget(config: SearchConfig, spec: ModelSpec, initial: Widths, device, processes: Processes, log):
    """With ``--budget latency``: the latency model, calibrated on the original network."""
    if config.budget != "latency":
        return None
    if processes.world_size > 1:
        raise UserError(
            "--budget latency times networks in one process; run the search without torchrun "
            "(or hold --budget macs)"
        )
    model = latency_model(spec, config.latency, device, config.recipe.precision, config.recipe.channels_last)
    log(f"latency: timing the original network's layers on {model.table.description} ({model.table.path})")
    seconds, spread = model.calibrate(initial)
    log(
        f"latency: original {1e3 * seconds:.3f} ms per {config.latency.mode} pass of {config.latency.batch} "
        f"in {model.latency_precision} (two repeats {spread:.1%} apart); its layers' sum "
        f"{1e3 * model.layers_sum(initial):.3f} ms"
    )
    return model


def run_search(
    config: SearchConfig,
    log: Callable[[str], None] = print,
    force: bool = False,
    tensorboard: bool = False,
    processes: Processes = SINGLE,
) -> FinalResult:
    """Run the whole search, or continue the unfinished one in ``config.out``; return what
    ``final.json`` holds. ``tensorboard``: also write scalars to ``out/tensorboard``.
    With several ``processes`` every one runs this; only rank 0 writes and logs."""
    out = user_path(config.out)
    if not processes.is_main:
        log = lambda line: None  # noqa: E731
    config.validate()
    device = resolve_device(config.device)
    if tensorboard:
        require_tensorboard()
    data = prepare_data(config.data, config.seed, device, hold_out=True)
    spec = model_spec_for(config.model, data.info)  # a folder dataset's classes are its folders
    initial = starting_widths(config, spec)
    config.rule.validate(len(initial))
    latency = timed_budget(config, spec, initial, device, processes, log)
    cost_of = latency.nanoseconds if latency else lambda widths: measure(spec, widths, config.budget)  # noqa: E731
    # a layer everything passes through keeps enough channels for the classes (``cuts``)
    floor, raised = least_widths(spec, initial, config.rule.min_width)
    # refused before any training when the minimum widths alone exceed the budget (timed
    # beside the original under a latency budget, as every time the search holds)
    check_floor(
        initial,
        cost_of,
        cost_of(initial),
        floor,
        LATENCY_TOLERANCE if latency else BUDGET_TOLERANCE,
        width_grid(spec, config.rule.round_to),
        show=(lambda ns: f"{ns / 1e6:.3f} ms") if latency else "{:,}".format,
    )
    config = with_fur_precision(config, device)
    settings = settings_record(config, spec, initial, processes.world_size)

    def open_run_directory() -> list[IterationRecord]:
        check_writable(out)
        history = completed_iterations(out, settings, force)  # after every check: --force deletes
        if not (out / "config.json").exists():
            settings["provenance"] = {**provenance(device), "dataset_sha256": data.sha256}
            settings["data_sizes"] = data.sizes
            write_json(out / "config.json", settings)
        return history

    history = processes.agree(open_run_directory)
    budget = model_cost(spec, initial)
    batch, world = config.recipe.batch_size, processes.world_size
    log(
        f"search: {network_name(spec)} on {data.info.name} ({len(data.train)} train / {len(data.val)} val / "
        f"{len(data.test)} test images), {plural(config.iterations, 'iteration')}, device {device}, "
        f"budget {cost_text(cost_of(initial), config.budget)}; run directory {out}"
        + (f"; resuming at iteration {len(history) + 1}" if history else "")
        + (f"; {world} processes, batch {batch} per process = {batch * world}" if world > 1 else "")
    )
    scalars = ScalarLog(out / "tensorboard" if tensorboard and processes.is_main else None)
    if raised:
        log(floor_line(initial, raised, spec.num_classes))
    search = Search(config, spec, data, initial, out, scalars, log, processes, latency, floor)
    widths = history[-1].next_widths if history else initial
    try:
        for iteration in range(len(history), config.iterations):
            if layers_to_move(config.rule, iteration) == 0:  # k only decays: nothing moves from here
                log(
                    f"iter {iteration + 1}/{config.iterations}: k is 0 from here on (k0 {config.rule.k0:g}, "
                    f"decay {config.rule.k_decay:g} per iteration), so no width can move: the search ends "
                    f"after {plural(iteration, 'iteration')}"
                )
                break
            began = time.perf_counter()
            record = step(search, iteration, widths, history[-1].widths if history else None)
            if processes.is_main:
                append_record(out, record)
            history.append(record)
            report_step(search, record, time.perf_counter() - began)
            widths = record.next_widths
    finally:
        scalars.close()

    final_cost = model_cost(spec, widths)
    final = FinalResult(
        space=spec.space,
        model=spec,
        widths=widths,
        macs=final_cost.macs,
        params=final_cost.params,
        original_widths=initial,
        original_macs=budget.macs,
        original_params=budget.params,
        budget=config.budget,
        iterations=len(history),
        **(measured_latency(latency, initial, widths, log) if latency else {}),
    )
    if processes.is_main:
        write_final(out, final, keep_checkpoint=bool(config.inherit))
    log(widths_table(initial, widths))
    log(f"MACs {budget.macs:,} -> {final_cost.macs:,}; params {budget.params:,} -> {final_cost.params:,}")
    # compare trains 3 networks x 5 seeds on the training and validation images together
    trained_images = training_epochs(config, len(history)) * len(data.train)
    per_image = sum(record.seconds["train"] for record in history) / trained_images
    compare_seconds = per_image * config.recipe.epochs * (len(data.train) + len(data.val)) * 3 * 5
    for line in outcome_lines(history, str(out), compare_seconds, inherited=bool(config.inherit)):
        log(line)
    log(f"wrote {out / 'final.json'}")
    return final


def measured_latency(latency: LatencyModel, original: Widths, searched: Widths, log) -> dict:
    """The check of a latency search: both networks timed whole, now, beside the estimate."""
    original_seconds = latency.measure_network(original).seconds
    ratio, spread = latency.ratio(searched, original)
    seconds, estimate = ratio * original_seconds, latency.estimate(searched)
    log(
        f"latency measured: original {1e3 * original_seconds:.3f} ms, searched {1e3 * seconds:.3f} ms "
        f"({seconds / original_seconds - 1:+.1%}, spread {spread:.1%}); the table estimated "
        f"{1e3 * estimate:.3f} ms ({estimate / seconds - 1:+.1%} off the measurement)"
    )
    if abs(seconds / original_seconds - 1) > LATENCY_TOLERANCE:
        log(
            f"warning: timed again, the searched network's time lies "
            f"{seconds / original_seconds - 1:+.1%} off the original's, beyond the {LATENCY_TOLERANCE:.0%} "
            "the search held: the timings of this device "
            "vary by that much (see the spread), or the time hardly depends on the widths here"
        )
    return {
        "latency": seconds,
        "original_latency": original_seconds,
        "latency_estimate": estimate,
        "latency_table": str(latency.table.path),
    }


def step(search: Search, iteration: int, widths: Widths, parent: Widths | None = None) -> IterationRecord:
    """One iteration: train ``widths``, measure their FUR, adjust and rescale them.
    ``parent``: the previous iteration's widths, whose trained weights ``--inherit`` carries."""
    config, spec, data, processes = search.config, search.spec, search.data, search.processes
    seed = config.seed + 1000 * iteration
    label = f"iter {iteration + 1}/{config.iterations}"
    recipe, share = iteration_recipe(config, iteration)
    saved = processes.agree(lambda: load_checkpoint(search.out, iteration, widths))
    if saved is not None:
        search.log(
            f"{label}: continuing the training from its checkpoint after epoch {len(saved['history'])}"
        )

    def checkpoint(state: dict) -> None:
        if processes.is_main:
            phase = "fur" if len(state["history"]) == recipe.epochs else "train"
            save_checkpoint(search.out, iteration, widths, phase, state)

    started = time.perf_counter()

    def on_epoch(record: dict) -> None:
        values = {f"train/{key}": record[key] for key in ("loss", "top1", "lr")}
        search.scalars.add(f"iter{iteration + 1}", values, record["epoch"])
        if iteration == 0 and record["epoch"] == 1 and saved is None:
            first = time.perf_counter() - started
            epochs = training_epochs(config, config.iterations)
            search.log(
                f"{label}: the first epoch took {first:.{1 if first < 10 else 0}f} s here, so the search's "
                f"{epochs:g} epoch{'' if epochs == 1 else 's'} of training will take about "
                f"{duration(first * epochs)}, and its FUR more (known after this iteration)"
            )

    torch.manual_seed(seed)
    model = build(spec, widths).to(data.train.device)
    carrying = {}  # the seconds the carry took, when it ran
    if config.inherit and iteration > 0 and saved is None:
        timer = time.perf_counter()
        moved = inherit_weights(search, iteration, parent, model, widths, label, seed)
        carrying["inherit"] = time.perf_counter() - timer
        search.log(
            f"{label}: starts from iteration {iteration}'s weights ({moved}), "
            f"training {plural(recipe.epochs, 'epoch')}"
            + (f" over {share:.0%} of the training images" if share < 1 else "")
        )
    train_set = data.train
    if share < 1:  # a share of the images, drawn per iteration
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))
        train_set = train_set.subset(order[: max(1, round(share * len(train_set)))].sort().values)
    fit_log = fit(
        model, train_set, data.info, recipe, seed=seed, label=label, checkpoint=checkpoint,
        resume_from=saved, on_epoch=on_epoch, processes=processes,
        drop_progress=regulariser_progress(config, iteration),
    )  # fmt: skip
    val = evaluate(model, data.val, data.info, processes=processes)
    test = evaluate(model, data.test, data.info, processes=processes)

    timer = time.perf_counter()
    f = search.sensitivities(widths)
    estimate = estimate_fur(model, data.val, data.info, f, config.fur, seed=seed, processes=processes)
    seconds_fur = time.perf_counter() - timer
    k = layers_to_move(config.rule, iteration)

    timer = time.perf_counter()
    target = search.cost(search.initial)
    rule, grid = config.rule, width_grid(spec, config.rule.round_to)  # --round-to, grouped layers' multiples
    adjusted, grown, shrunk = adjust(
        widths, estimate.fur, search.initial, iteration, rule, grid, search.floor
    )
    if search.latency is not None:
        # aimed at the budget itself, not the band's edge: timed again, a network at the
        # edge lies beyond it as often as not; the slack a step of the time leaves under it
        # goes to the widths of highest FUR, each growth confirmed by a fresh timing
        rescaled = widest_within(adjusted, search.cost, target, search.floor, 0.0, round_to=grid)
        by_fur, retimed = sorted(widths, key=lambda name: -estimate.fur[name]), search.latency.retimed
        rescaled = filled(rescaled, search.cost, target, by_fur, LATENCY_FILL_SLACK, grid, retimed)
    else:
        rescaled = rescale(adjusted, search.cost, target, search.floor, round_to=grid)
    next_widths = processes.broadcast(rescaled)
    seconds_adjust = time.perf_counter() - timer

    cost = model_cost(spec, widths)
    return IterationRecord(
        iteration=iteration,
        widths=widths,
        macs=cost.macs,
        params=cost.params,
        train=fit_log["epochs"][-1],
        val=val,
        test=test,
        sensitivities=f,
        drop_rates=estimate.drop_rates,
        clipped_drop_rates=estimate.clipped,
        clean_val_loss=estimate.clean_loss,
        loss_increase=estimate.loss_increase,
        fur=estimate.fur,
        fur_method=estimate.method,
        fur_halves=estimate.halves,
        fur_stability=stability(estimate, k),
        k=k,
        grown=grown,
        shrunk=shrunk,
        next_widths=next_widths,
        next_macs=measure(spec, next_widths, "macs"),
        next_params=measure(spec, next_widths, "params"),
        next_excess=excess(search.cost(next_widths), target),  # (cost - budget) / cost
        latency=search.latency.seconds(widths) if search.latency else None,
        next_latency=search.latency.seconds(next_widths) if search.latency else None,
        seconds={"train": fit_log["seconds"], "fur": seconds_fur, "adjust": seconds_adjust, **carrying},
    )


def report_step(search: Search, record: IterationRecord, wall: float) -> None:
    """The iteration's log line, its warnings and its TensorBoard scalars; after the first
    iteration (``wall`` seconds in all) the time the others will take."""
    config, agreement = search.config, record.fur_stability
    label = f"iter {record.iteration + 1}/{config.iterations}"
    target, next_cost = search.cost(search.initial), search.cost(record.next_widths)
    search.scalars.add(
        "search",
        {
            "val/top1": record.val["top1"],
            "test/top1": record.test["top1"],
            "cost/macs": record.macs,
            "cost/params": record.params,
            "fur/split_half_spearman": agreement["spearman"],
        },
        record.iteration + 1,
    )
    overlaps = (
        f", grow/shrink overlap {agreement['grow_overlap']:.2f}/{agreement['shrink_overlap']:.2f}"
        if record.k
        else ""
    )
    search.log(
        f"{label}: val top-1 {100 * record.val['top1']:.2f}% test top-1 {100 * record.test['top1']:.2f}% | "
        f"grow {', '.join(record.grown) or '-'} | shrink {', '.join(record.shrunk) or '-'} | "
        f"next {cost_text(next_cost, config.budget)} ({next_cost / target - 1:+.2%}) | "
        f"train {record.seconds['train']:.0f}s "
        f"fur {record.seconds['fur']:.0f}s | FUR split-half Spearman {agreement['spearman']:.2f}{overlaps}"
    )
    left = config.iterations - record.iteration - 1
    if record.iteration == 0 and left:
        # each later iteration pays the first one's FUR, evaluation and adjustment whole, and
        # its training by its epochs (fewer with --inherit)
        # (a resumed iteration's wall time misses the training before the resume: then the parts)
        per_epoch = record.seconds["train"] / config.recipe.epochs
        later_epochs = training_epochs(config, config.iterations) - training_epochs(config, 1)
        parts = sum(seconds for phase, seconds in record.seconds.items() if phase != "train")
        estimate = max(wall - record.seconds["train"], parts) * left + per_epoch * later_epochs
        search.log(f"{label}: about {duration(estimate)} more for the other {plural(left, 'iteration')}")
    if not within_budget(next_cost, target, search.tolerance):
        search.log(
            f"{label}: warning: no rounding of the adjusted widths lies within {search.tolerance:.0%} of the "
            "budget; "
            f"the next widths cost {cost_text(next_cost, config.budget)}, {next_cost / target - 1:+.2%} "
            + (
                "off (the next wider scaling timed above the band: time steps with the kernels' "
                "channel blocks, or the timings are noisy)"
                if search.latency
                else "off (tiny widths round coarsely: a larger --width-mult or a smaller --round-to helps)"
            )
        )
    if agreement["spearman"] < LOW_STABILITY:
        search.log(
            f"{label}: warning: the two halves of the validation split rank the widths differently "
            f"(Spearman {agreement['spearman']:.2f}); the adjustment is partly noise. Consider more "
            "--repeats or a larger --val-limit"
        )
