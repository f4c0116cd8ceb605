"""The nightly deployment: the build flow served on a schedule by a standing Prefect server.

`chronology serve-nightly` registers `build-chronologies/nightly` with the server at
PREFECT_API_URL and runs, in its own process, each flow run the schedule or a person
starts (from the UI, or `prefect deployment run 'build-chronologies/nightly'`). For
production the same deployment can run under a work pool instead (README).
"""

from __future__ import annotations

from prefect.schedules import Cron

from flows.build import build_chronologies

DEPLOYMENT = "nightly"


def nightly(source: str, out: str, as_of: str | None, shards: int, workers: int,
            keep_versions: int, cron: str, timezone: str):
    """The deployment, with the parameters every scheduled run gets. A person starting a
    run can override any of them (`children`, `rules`, …). The source's password is
    never a parameter (Prefect stores parameters): runs read it from the serving
    process's environment."""
    return build_chronologies.to_deployment(
        name=DEPLOYMENT, schedule=Cron(cron, timezone=timezone),
        parameters={"source": source, "out": out, "as_of": as_of, "shards": shards,
                    "workers": workers, "keep_versions": keep_versions},
        description="Rebuild every child's chronology and publish the pages.",
        tags=["chronology"])


def serve(**settings) -> None:
    """Serve the nightly deployment until stopped. One run at a time: a run started while
    another is going waits for it (two would also be kept apart by the output's lock)."""
    from prefect import serve as prefect_serve

    prefect_serve(nightly(**settings), limit=1, print_starting_message=False)
