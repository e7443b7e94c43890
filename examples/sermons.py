"""The sermon transcription pipeline from the design: fetch metadata → transcribe → save → notify.

Run the demo (SQLite, no server):   scripts/demo        (or: python -m examples.sermons)
Run it as a worker instead:         stepwell worker examples.sermons:app
                                    stepwell send --app examples.sermons:app transcription.requested \
                                        '{"sermon_id": 1, "url": "https://example.org/1.mp3"}'

The transcriber is fake: it fails now and then like a real speech-to-text API would, so the demo
shows retries with backoff, a dead letter (a sermon whose audio is missing), and its redrive.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

import stepwell
from stepwell.render import dead_letters_table, make_console, run_timeline, runs_table
from stepwell.runtime.worker import WorkerOptions

app = stepwell.App("sermons")
MISSING_AUDIO: set[str] = {"https://example.org/sermons/missing.mp3"}
FLAKY_SERMONS: set[int] = {2}  # the fake transcriber times out on the first try for these


def fetch_metadata(url: str) -> dict[str, Any]:
    if url in MISSING_AUDIO:
        raise stepwell.NonRetriableError(f"no audio at {url}")
    digest = hashlib.sha256(url.encode()).hexdigest()
    return {"url": url, "duration_s": 1200 + int(digest[:4], 16) % 2400, "language": "en"}


def call_speech_to_text(meta: dict[str, Any], sermon_id: int, attempt: int) -> str:
    if sermon_id in FLAKY_SERMONS and attempt == 1:
        raise TimeoutError("speech-to-text API timed out")
    words = meta["duration_s"] // 4
    return " ".join(["grace"] * min(words, 50)) + f" … ({words} words)"


def save(sermon_id: int, text: str) -> dict[str, Any]:
    return {"sermon_id": sermon_id, "chars": len(text), "stored_at": f"transcripts/{sermon_id}.txt"}


def notify(sermon_id: int, saved: dict[str, Any]) -> str:
    return f"emailed the editor: sermon {sermon_id} transcribed ({saved['chars']} characters)"


def alert_on_call(ctx: stepwell.Context) -> str:
    """on_failure: called once, durably, when a run is dead-lettered."""
    failed = ctx.event.data
    return f"paged on-call: {failed['function']} run {failed['run_id']} failed: {failed['error']['message']}"


@app.function(
    "transcribe-audio",
    trigger=stepwell.on_event("transcription.requested"),
    retries=3,
    backoff=stepwell.Backoff(base=timedelta(milliseconds=200)),
    on_failure=alert_on_call,
)
def transcribe(ctx: stepwell.Context) -> dict[str, Any]:
    sermon_id, url = ctx.event.data["sermon_id"], ctx.event.data["url"]
    meta = ctx.step.run("fetch-audio-metadata", fetch_metadata, url)
    text = ctx.step.run("transcribe", call_speech_to_text, meta, sermon_id, ctx.attempt)
    saved = ctx.step.run("save-transcription", save, sermon_id, text)
    ctx.step.sleep("cool-down", ctx.event.data.get("cool_down", "1s"))
    ctx.step.run("notify-user", notify, sermon_id, saved)
    return {"chars": len(text)}


def demo(quick: bool) -> None:
    console = make_console()
    db = Path(".stepwell/demo")
    shutil.rmtree(db, ignore_errors=True)
    app.use_database(f"sqlite:///{db / 'stepwell.db'}")
    count = 3 if quick else 6
    cool_down = "300ms" if quick else "1s"
    requests = [
        {
            "name": "transcription.requested",
            "data": {"sermon_id": i, "url": f"https://example.org/sermons/{i}.mp3", "cool_down": cool_down},
        }
        for i in range(1, count + 1)
    ]
    requests.append(
        {"name": "transcription.requested", "data": {"sermon_id": 99, "url": "https://example.org/sermons/missing.mp3"}}
    )
    console.rule("[bold]Stepwell demo: sermon transcription on SQLite")
    ids = app.send(requests)
    console.print(f"sent {len(ids)} events (durable before send returned) into {db / 'stepwell.db'}")
    app.send("sermon.uploaded", {"sermon_id": 1})  # nothing listens: kept, with disposition no_match
    _work_until_idle(console)
    console.print(runs_table(app.runs(function="transcribe-audio")))
    flaky = next(r for r in app.runs(function="transcribe-audio") if r.attempt > 1 and r.status == "completed")
    console.print(run_timeline(app.get_run(flaky.id)))
    console.print(dead_letters_table(app.dead_letters()))
    [handler] = app.runs(function="transcribe-audio.on-failure")
    console.print(f"on_failure → {handler.output}")

    console.rule("[bold]The audio is uploaded after all: redrive the dead letter")
    MISSING_AUDIO.clear()
    redriven = app.redrive(function="transcribe-audio")
    console.print(f"redriven: {redriven}")
    _work_until_idle(console)
    console.print(run_timeline(app.get_run(redriven[0])))
    statuses = [r.status.value for r in app.runs(function="transcribe-audio")]
    summary = (
        f"{statuses.count('completed')}/{len(statuses)} sermons transcribed, {len(app.dead_letters())} dead letters"
    )
    console.print(f"[bold green]{summary}")
    url = f"sqlite:///{(db / 'stepwell.db').absolute()}"
    console.print(f"look around (the demo has its own database): stepwell runs ls --database-url {url}", soft_wrap=True)


def _work_until_idle(console: Console) -> None:
    """Run an in-process worker until every run has ended (what `stepwell dev` does, bounded)."""

    async def main() -> None:
        stop = asyncio.Event()
        worker = app.worker(WorkerOptions(concurrency=4, poll_interval=0.05))
        task = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            stats = app.store.queue_stats()
            if stats.ready + stats.scheduled + stats.running == 0:
                break
        stop.set()
        await task

    started = time.monotonic()
    asyncio.run(main())
    console.print(f"worker drained the queue in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sermons and shorter sleeps (CI)")
    demo(parser.parse_args().quick)
