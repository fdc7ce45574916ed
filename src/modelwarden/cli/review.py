"""Human review commands: review sample | next | submit | status | queues | export | import |
agreement | rubric-init."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.panel import Panel
from rich.text import Text

from modelwarden.cli.app import (
    FORMAT_OPTION,
    Format,
    app,
    console,
    err_console,
    handle_errors,
    print_json,
    print_table,
    settings,
    state_store,
)
from modelwarden.errors import EXIT_CHECK_FAILED, InputError
from modelwarden.review import DEFAULT_QUEUE

if TYPE_CHECKING:
    from modelwarden.governance.keys import ApiKey
    from modelwarden.store.state import StateStore

review_app = typer.Typer(
    help="Human review: sample a queue, review in the terminal, export, agreement.",
    no_args_is_help=True,
)
app.add_typer(review_app, name="review")

QUEUE_OPTION = typer.Option(DEFAULT_QUEUE, "--queue", "-q", help="Review queue name.")
QUIT_WORDS = frozenset({"q", "quit", "exit"})
OWNER_KEY_HELP = (
    "API key (also MODELWARDEN_KEY): its role must review, and only the queue's owner or an "
    "admin key may see this. Without one the local command line sees every queue."
)


def _caller(state: StateStore, key: str | None, subject: str) -> ApiKey | None:
    """The key behind ``--key`` if its role may review (a refusal is audited); None without."""
    # imported here: keeps --help fast
    from modelwarden.governance.keys import require

    return require(state, key, "review", subject) if key else None


# ---- sample ------------------------------------------------------------------------------------
class StrategyChoice(StrEnum):
    stratified = "stratified"
    random = "random"
    low_feedback = "low_feedback"
    safety = "safety"
    shadow_disagreement = "shadow_disagreement"


@review_app.command("sample")
@handle_errors
def review_sample(
    source: str = typer.Option(..., "--from", help="logs, or an evaluation run (id or name)."),
    n: int = typer.Option(..., "--n", "-n", min=0, help="How many items to sample."),
    strategy: StrategyChoice = typer.Option(StrategyChoice.stratified, "--strategy"),
    by: str = typer.Option(
        None,
        "--by",
        help="Strata, comma separated [default: plant_id,model_version for logs, topic for runs].",
    ),
    reviewers: int = typer.Option(2, "--reviewers", min=1, max=50, help="Reviewers per item."),
    gold: int = typer.Option(0, "--gold", min=0, help="Gold items with known answers to mix in."),
    gold_file: Path = typer.Option(
        None, "--gold-file", help="JSONL of {id, prompt, response, expected} gold items."
    ),
    pair_with: str = typer.Option(
        None, "--pair-with", help="Another run: review blind pairs of the two runs' answers."
    ),
    seed: int = typer.Option(0, "--seed"),
    queue: str = QUEUE_OPTION,
    rubric: Path = typer.Option(None, "--rubric", help="Rubric YAML [default: plant-answer]."),
    since: str = typer.Option(None, "--since", help="Logs: ISO date or time (inclusive)."),
    until: str = typer.Option(None, "--until", help="Logs: ISO date or time (exclusive)."),
    append: bool = typer.Option(False, "--append", help="Add to an existing queue."),
    lease_minutes: float = typer.Option(
        60.0, "--lease-minutes", help="How long a claimed item waits for its reviewer."
    ),
    key: str = typer.Option(
        None,
        "--key",
        envvar="MODELWARDEN_KEY",
        help="API key (also MODELWARDEN_KEY) that owns a new queue: it and admin keys see its "
        "progress and agreement. Without one, admin keys only.",
        show_default=False,
    ),
    format: Format = FORMAT_OPTION,
) -> None:
    """Build a review queue: sampled items, N reviewers each, gold items and blind pairs."""
    from modelwarden.review import service

    spec = service.sample_spec(
        source=source,
        n=n,
        strategy=strategy.value,
        by=by,
        reviewers=reviewers,
        gold=gold,
        gold_file=gold_file,
        pair_with=pair_with,
        seed=seed,
        queue=queue,
        rubric=rubric,
        since=since,
        until=until,
        append=append,
        lease_minutes=lease_minutes,
    )
    state = state_store()
    try:
        owner = _caller(state, key, f"review queue {queue}")
        summary = service.sample(settings(), state, spec, owner)
    finally:
        state.close()
    if format == Format.json:
        print_json(summary)
        return
    added = summary["added"]
    print_table(
        [
            {
                "queue": summary["queue"],
                "rubric": summary["rubric"],
                "reviewers/item": summary["reviewers_per_item"],
                "requested": summary["requested"],
                "sampled": summary["sampled"],
                "single": added.get("single", 0),
                "pairwise": added.get("pairwise", 0),
                "gold": added.get("gold", 0),
                "already queued": summary["already_in_queue"],
            }
        ],
        title="Review queue " + ("created" if summary["created"] else "extended"),
    )
    if summary["strata"]:
        print_table(
            [{"stratum": k, "items": v} for k, v in summary["strata"].items()], title="Strata"
        )
    if summary["sampled"] < summary["requested"]:
        err_console.print(
            f"[bold yellow]note[/]: only {summary['sampled']} of {summary['requested']} items "
            "matched the strategy"
        )


# ---- next --------------------------------------------------------------------------------------
class _Quit(Exception):
    pass


def _show(item: dict[str, Any]) -> None:
    prog = item.get("progress") or {}
    head = f"item {item['item_id']}"
    if prog:
        head += f"  ·  reviewed {prog['reviewed']}, {prog['available']} more available"
    console.print(Panel(Text(item["prompt"]), title="question", subtitle=head, expand=True))
    if item["kind"] == "pairwise":
        console.print(Panel(Text(item["first"]), title="first answer", expand=True))
        console.print(Panel(Text(item["second"]), title="second answer", expand=True))
    else:
        console.print(Panel(Text(item["response"]), title="answer", expand=True))
    if item.get("reference"):
        console.print(Panel(Text(item["reference"]), title="reference answer", expand=True))


def _ask_line(prompt: str) -> str:
    try:
        line = console.input(prompt)
    except EOFError:
        raise _Quit("input ended") from None
    if line.strip().lower() in QUIT_WORDS:
        raise _Quit("stopped")
    return line.strip()


def _ask(dim: Any) -> Any:
    choices = dim.choices()
    hint = f"{dim.min:g}-{dim.max:g}" if dim.type == "numeric" else "/".join(choices)
    anchors = ", ".join(f"{k} = {v}" for k, v in dim.anchors.items())
    label = dim.question or dim.name
    console.print(f"[bold]{dim.name}[/]: {label}" + (f" ({anchors})" if anchors else ""))
    while True:
        text = _ask_line(f"  [{hint}]{'' if dim.required else ' (optional)'} > ")
        if not text and not dim.required:
            return None
        try:
            return dim.parse(text)
        except ValueError as exc:
            console.print(f"  [red]{exc}[/]")


def _interactive(state: StateStore, queue: str, reviewer: str, limit: int | None) -> int:
    from modelwarden.review import service
    from modelwarden.review.rubrics import Rubric

    done = 0
    console.print(f"Reviewing queue [bold]{queue}[/] as [bold]{reviewer}[/]; type q to stop.")
    while limit is None or done < limit:
        item = service.next_for(state, queue, reviewer)
        if item is None:
            console.print(f"No more items for {reviewer} in queue {queue}.")
            break
        _show(item)
        rubric = Rubric.model_validate(item["rubric"])
        try:
            answers = {d.name: _ask(d) for d in rubric.dimensions}
            comment = _ask_line("comment (optional) > ") or None
        except _Quit as why:
            console.print(f"{why}; item {item['item_id']} stays yours for now.")
            break
        service.submit(
            state,
            item["item_id"],
            reviewer,
            {k: v for k, v in answers.items() if v is not None},
            comment,
            origin="cli",
        )
        done += 1
        console.print(f"[green]saved[/] review {done} for item {item['item_id']}\n")
    console.print(f"{done} review(s) saved.")
    return done


class NextFormat(StrEnum):
    interactive = "interactive"
    json = "json"


@review_app.command("next")
@handle_errors
def review_next(
    reviewer: str = typer.Option(..., "--reviewer", "-r", help="Your reviewer name."),
    queue: str = QUEUE_OPTION,
    limit: int = typer.Option(None, "--limit", min=1, help="Stop after this many reviews."),
    format: NextFormat = typer.Option(
        NextFormat.interactive,
        "--format",
        "-f",
        help="interactive asks in the terminal (reads stdin); json prints the next item and "
        "claims it for review submit.",
    ),
) -> None:
    """Review items one after another in the terminal, or print the next one as JSON."""
    from modelwarden.review import service
    from modelwarden.review.queue import check_reviewer

    check_reviewer(reviewer)
    state = state_store()
    try:
        if format == NextFormat.json:
            print_json(service.next_for(state, queue, reviewer))
            return
        service.check_for_next(state, queue, reviewer)
        _interactive(state, queue, reviewer, limit)
    finally:
        state.close()


# ---- submit ------------------------------------------------------------------------------------
def _answers(value: str) -> Any:
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}", field="answers") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"--answers is not valid JSON: {exc}", field="answers") from exc


@review_app.command("submit")
@handle_errors
def review_submit(
    reviewer: str = typer.Option(..., "--reviewer", "-r"),
    item: str = typer.Option(..., "--item", help="Item id (from review next --format json)."),
    answers: str = typer.Option(
        ...,
        "--answers",
        help='JSON object, e.g. {"correctness": 4, "safety": true}; @FILE reads it.',
    ),
    comment: str = typer.Option(None, "--comment"),
    format: Format = FORMAT_OPTION,
) -> None:
    """Store one review. Sending it again is harmless; changing an earlier review is refused."""
    from modelwarden.review import service

    state = state_store()
    try:
        review = service.submit(state, item, reviewer, _answers(answers), comment, origin="cli")
    finally:
        state.close()
    if format == Format.json:
        print_json(review)
    else:
        console.print(
            f"{'saved' if review['created'] else 'already saved'}: review {review['id']} of "
            f"item {item} by {reviewer}"
        )


# ---- status / queues ---------------------------------------------------------------------------
@review_app.command("status")
@handle_errors
def review_status(
    queue: str = QUEUE_OPTION,
    key: str = typer.Option(
        None, "--key", envvar="MODELWARDEN_KEY", help=OWNER_KEY_HELP, show_default=False
    ),
    format: Format = FORMAT_OPTION,
) -> None:
    """How far a queue is: items, reviews given and still needed, reviewers."""
    from modelwarden.governance import audit
    from modelwarden.review import service

    state = state_store()
    try:
        caller = _caller(state, key, f"review queue {queue}")
        st = service.status(state, queue, caller, audit.record)
    finally:
        state.close()
    if format == Format.json:
        print_json(st)
        return
    items = st["items"]
    print_table(
        [
            {
                "queue": st["queue"],
                "rubric": st["rubric"],
                "reviewers/item": st["reviewers_per_item"],
                "single": items["single"],
                "pairwise": items["pairwise"],
                "gold": items["gold"],
                "reviews": st["reviews"],
                "complete": st["complete_items"],
                "partly": st["partly_reviewed_items"],
                "untouched": st["unreviewed_items"],
                "still needed": st["reviews_needed"],
                "open claims": st["open_claims"],
            }
        ],
        title="Review queue",
    )
    if st["reviewers"]:
        print_table(
            [{"reviewer": k, "reviews": v} for k, v in st["reviewers"].items()], title="Reviewers"
        )


@review_app.command("queues")
@handle_errors
def review_queues(format: Format = FORMAT_OPTION) -> None:
    """Every review queue."""
    from modelwarden.review import service

    state = state_store()
    try:
        queues = service.queues(state)
    finally:
        state.close()
    if format == Format.json:
        print_json(queues)
        return
    print_table(
        [
            {
                "queue": q["name"],
                "rubric": q["rubric"]["name"],
                "reviewers/item": q["reviewers_per_item"],
                "owner": service.owner_label(q),
                "created": f"{q['created_at']:%Y-%m-%d %H:%M}",
            }
            for q in queues
        ],
        title="Review queues",
    )


# ---- export / import ---------------------------------------------------------------------------
@review_app.command("export")
@handle_errors
def review_export(
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file to write."),
    queue: str = typer.Option(None, "--queue", "-q", help="Only this queue [default: all]."),
    format: Format = FORMAT_OPTION,
) -> None:
    """Write queues, items (with gold answers and pair orders) and reviews as JSONL."""
    from modelwarden.review import service

    state = state_store()
    try:
        counts = service.export(state, out, queue)
    finally:
        state.close()
    if format == Format.json:
        print_json(counts)
    else:
        console.print(
            f"wrote {out}: {counts['queues']} queue(s), {counts['items']} item(s), "
            f"{counts['reviews']} review(s)"
        )


@review_app.command("import")
@handle_errors
def review_import(
    path: Path = typer.Argument(..., help="A file written by review export."),
    key: str = typer.Option(
        None,
        "--key",
        envvar="MODELWARDEN_KEY",
        help="API key (also MODELWARDEN_KEY) that owns the queues this import creates. "
        "Without one, admin keys only.",
        show_default=False,
    ),
    format: Format = FORMAT_OPTION,
) -> None:
    """Import an export. Checked as a whole first; importing twice changes nothing."""
    from modelwarden.review import service

    state = state_store()
    try:
        owner = _caller(state, key, f"review import {path.name}")
        counts = service.import_export(state, path, owner)
    finally:
        state.close()
    if format == Format.json:
        print_json(counts)
    else:
        print_table([counts], title=f"Imported {path}")


# ---- agreement ---------------------------------------------------------------------------------
@review_app.command("agreement")
@handle_errors
def review_agreement(
    queue: str = QUEUE_OPTION,
    threshold: float = typer.Option(
        0.667, "--threshold", help="Alpha below this marks a dimension unreliable."
    ),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when a dimension is unreliable."),
    key: str = typer.Option(
        None, "--key", envvar="MODELWARDEN_KEY", help=OWNER_KEY_HELP, show_default=False
    ),
    format: Format = FORMAT_OPTION,
) -> None:
    """Krippendorff's alpha per dimension, kappa per reviewer pair, reviewers vs consensus."""
    from modelwarden.governance import audit
    from modelwarden.review import service

    state = state_store()
    try:
        caller = _caller(state, key, f"review queue {queue}")
        rep = service.agreement(state, queue, threshold, caller, audit.record)
    finally:
        state.close()
    if format == Format.json:
        print_json(rep)
    else:
        _print_agreement(rep)
    if strict and rep["unreliable"]:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _print_agreement(rep: dict[str, Any]) -> None:
    dims = rep["dimensions"]
    if not dims:
        console.print(f"queue {rep['queue']}: no reviews of shared items yet")
    print_table(
        [
            {
                "dimension": d["name"],
                "level": d["level"],
                "alpha": d["alpha"],
                "reliable": "yes" if d["reliable"] else "NO",
                "items": d["n_items"],
                "ratings": d["n_ratings"],
                "reviewers": d["n_reviewers"],
                "mean": d.get("mean"),
            }
            for d in dims
        ],
        title=f"Agreement in queue {rep['queue']} (alpha >= {rep['threshold']:g} is reliable)",
    )
    pairs = [{"dimension": d["name"], **p} for d in dims for p in d["pairs"]]
    if pairs:
        print_table(
            pairs,
            ["dimension", "a", "b", "n", "kappa", "weights"],
            title="Cohen's kappa per reviewer pair",
        )
    versus = [{"dimension": d["name"], **r} for d in dims for r in d["reviewers"]]
    if versus:
        print_table(
            versus,
            ["dimension", "reviewer", "n", "agreement", "alpha", "bias"],
            title="Each reviewer against the others' consensus",
        )
    if rep["gold"]:
        print_table(
            [
                {
                    "reviewer": g["reviewer"],
                    "gold items": g["items"],
                    "checks": g["checks"],
                    "correct": g["correct"],
                    "accuracy": g["accuracy"],
                }
                for g in rep["gold"]
            ],
            title="Gold items",
        )
    if rep["pairwise"]:
        print_table(rep["pairwise"]["pairs"], title="Blind pairs")
    if rep["unreliable"]:
        err_console.print(
            f"[bold yellow]unreliable[/] (left out of scorecards): {', '.join(rep['unreliable'])}"
        )


# ---- rubric ------------------------------------------------------------------------------------
@review_app.command("rubric-init")
@handle_errors
def review_rubric_init(
    out: Path = typer.Option(Path("rubric.yaml"), "--out", "-o"),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write the default rubric as YAML, to adapt and pass to review sample --rubric."""
    from modelwarden.review import service

    console.print(f"wrote {service.write_rubric(out, force)}")
