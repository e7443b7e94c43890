"""Microprocesses: score every company once a month, in parallel, and build one report at the end.

A light parent lists the companies lazily and fans out one scoring child per company (the
children are rows, created in chunks; the parent never holds the list in memory), suspends
without holding a worker until every child has finished, then reduces their scores into a
report and "emails" it, exactly once.

    python -m examples.credit_scores                 # 100,000 companies on SQLite, with a progress bar
    python -m examples.credit_scores --companies 2000

The parent is started by the `credit.month_closed` event; a monthly cron trigger
(`stepwell.cron("0 3 1 * *")`) replaces it once cron triggers land.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import stepwell
from stepwell.render import make_console
from stepwell.runtime.worker import WorkerOptions

app = stepwell.App("credit-scores")


def list_companies(count: int) -> Iterator[dict[str, Any]]:
    """Stands in for paging through a companies table: one item at a time."""
    for company_id in range(1, count + 1):
        yield {"company_id": company_id}


def score(company_id: int) -> int:
    digest = hashlib.blake2b(str(company_id).encode(), digest_size=2).digest()
    return 300 + int.from_bytes(digest, "big") % 551  # a FICO-like 300..850


@app.function("score-company", retries=2)
def score_company(ctx: stepwell.Context) -> dict[str, int]:
    company_id = int(ctx.event.data["company_id"])
    return {"company_id": company_id, "score": score(company_id)}


@app.function("monthly-credit-report", trigger=stepwell.on_event("credit.month_closed"), retries=2)
def monthly_report(ctx: stepwell.Context) -> dict[str, Any]:
    month, count = ctx.event.data["month"], int(ctx.event.data["companies"])
    scores = ctx.step.fan_out("score-all", score_company, list_companies(count), tolerate=0.001)
    report = ctx.step.run("build-report", build_report, month, scores)
    ctx.step.run("email-report", email_report, report)
    return report


def build_report(month: str, scores: stepwell.FanOut) -> dict[str, Any]:
    """Reads the children's results lazily, a page at a time: memory stays flat for any count."""
    total = count = 0
    bands = {"poor": 0, "fair": 0, "good": 0, "excellent": 0}
    for result in scores.results():
        if result is None:
            continue
        value = result["score"]
        total += value
        count += 1
        band = "poor" if value < 580 else "fair" if value < 670 else "good" if value < 740 else "excellent"
        bands[band] += 1
    return {
        "month": month,
        "scored": count,
        "failed": scores.failed,
        "average": round(total / max(count, 1), 1),
        "bands": bands,
    }


def email_report(report: dict[str, Any]) -> str:
    return f"emailed the credit committee the {report['month']} report ({report['scored']} companies)"


def demo(companies: int) -> None:
    console = make_console()
    db = Path(".stepwell/credit-demo")
    shutil.rmtree(db, ignore_errors=True)
    app.use_database(f"sqlite:///{db / 'stepwell.db'}")
    console.rule(f"[bold]Monthly credit scores: {companies:,} companies on SQLite")
    started = time.monotonic()
    app.send("credit.month_closed", {"month": "2026-10", "companies": companies})
    asyncio.run(_work(console, companies))
    [parent] = app.runs(function="monthly-credit-report")
    console.print(f"parent {parent.id}: {parent.status.value} in {time.monotonic() - started:.1f}s")
    console.print(parent.output)
    console.print(f"[bold green]{parent.output['scored']:,} companies scored, one report emailed")


async def _work(console: Any, companies: int) -> None:
    stop = asyncio.Event()
    worker = app.worker(WorkerOptions(concurrency=8, poll_interval=0.05, claim_batch=200))
    task = asyncio.create_task(worker.run(stop))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("children finished", total=companies)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            parents = app.runs(function="monthly-credit-report")
            if parents:
                counts = app.fan_out_progress(parents[0].id, "score-all")
                progress.update(bar, completed=counts.finished)
                if parents[0].status.is_terminal:
                    break
    stop.set()
    await task


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=100_000)
    demo(parser.parse_args().companies)
