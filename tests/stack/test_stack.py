"""The stack of docker-compose.yaml without containers (see conftest.py), used as a site would:
the learning loop over HTTP through the balancer, a worker killed in the middle of a retrain,
an edge server killed under load, and Prometheus answering every query of the dashboards and
alert rules. The figures are printed (``pytest tests/stack -s`` shows them)."""

from __future__ import annotations

import csv
import errno
import importlib.util
import io
import re
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from core.app import App
from core.app.remote import RemoteApp
from core.registry import Photo, RetrainRun
from core.wire import ModelState, Prediction, ReviewAction
from tests.services import debian_binary
from tests.stack.conftest import REPO, Native, Stack, answers, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BASE_PER_LABEL = 50  # ingested for the first model
SUBMITTED_PER_LABEL = 10  # then submitted through the balancer, reviewed, retrained on
MISLABELLED = 2  # of the submissions: sent with the other label, corrected in review
CLIENTS = 8  # concurrent clients while an edge server dies


def say(line: str) -> None:
    print(f"[stack] {line}", flush=True)


def labelled(dataset_photos: dict[str, list[Path]], photos: slice) -> list[tuple[Path, str]]:
    return [(path, label) for label, paths in dataset_photos.items() for path in paths[photos]]


def other(label: str) -> str:
    return "grass" if label == "dandelion" else "dandelion"


@pytest.fixture(scope="module")
def first_champion(stack: Stack, dataset_photos: dict[str, list[Path]]) -> int:
    """Before any model the edge servers answer 503; then the workers ingest (fanned out),
    the command line trains, and both edge servers become ready with the first champion."""
    photo = dataset_photos["dandelion"][0].read_bytes()
    for _ in range(2 * len(stack.edges)):  # a real 5xx (no model yet), on every edge server
        answer = requests.post(
            f"{stack.api}/predict",
            files={"file": ("photo.jpg", photo)},
            headers={"X-API-Key": stack.api_key},
            timeout=60,
        )
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "no_champion"

    manifest = stack.folder / "first.csv"
    rows = labelled(dataset_photos, slice(0, BASE_PER_LABEL))
    manifest.write_text("url,label\n" + "".join(f"{path},{label}\n" for path, label in rows))
    started = time.monotonic()
    ingest = stack.classifi("ingest", "--queue", "--chunk-size", "25", str(manifest))
    assert ingest.returncode == 0, ingest.stderr + stack.logs()
    assert re.search(rf"Added\s+│\s+{len(rows)}\b", ingest.stdout), ingest.stdout
    parts = f"{-(-len(rows) // 25)} parts on {len(stack.workers)} workers"
    say(f"ingest of {len(rows)} photos in {parts}: {time.monotonic() - started:.1f} s")

    started = time.monotonic()
    train = stack.classifi("train")
    assert train.returncode == 0, train.stderr + stack.logs()
    say(f"first training (classifi train): {time.monotonic() - started:.1f} s")
    for url in stack.edge_urls:
        ready = wait_until(
            partial(answers, f"{url}/health/ready"),
            f"{url} ready with the first champion",
            stack.watched(),
        )
        say(f"{url} ready {ready:.1f} s later")
    (version,) = stack.remote(admin=True).versions()
    assert version.state == ModelState.CHAMPION
    return version.version


def open_run(app: App) -> int | None:
    with app.registry.session() as session:
        return session.scalar(select(RetrainRun.id).where(RetrainRun.finished_at.is_(None)))


def finished(app: App, run_id: int) -> bool:
    with app.registry.session() as session:
        run = session.get(RetrainRun, run_id)
        return run is not None and run.finished_at is not None


@dataclass(frozen=True)
class Retrain:
    """What the loop did: the submissions, the worker killed mid-retrain, the survivor's run."""

    submitted: dict[int, str]  # photo id -> its true label
    victim: Native
    run_id: int


@pytest.fixture(scope="module")
def retrained(stack: Stack, first_champion: int, dataset_photos: dict[str, list[Path]]) -> Retrain:
    """Photos submitted and reviewed through the balancer, a retrain queued by the admin, the
    worker holding the maintenance lock killed, and the other worker's check finishing it."""
    device, admin = stack.remote(), stack.remote(admin=True)
    photos = labelled(dataset_photos, slice(BASE_PER_LABEL, BASE_PER_LABEL + SUBMITTED_PER_LABEL))
    submitted: dict[int, str] = {}
    for number, (path, label) in enumerate(photos):
        proposed = other(label) if number < MISLABELLED else label
        submission = device.submit(path.read_bytes(), proposed, source=path.name)
        assert submission.stored, submission
        submitted[submission.photo_id] = label
    pending = admin.pending()
    assert {photo.id for photo in pending} == set(submitted)
    # The corrections first, then the rest at once: no scheduled check sees half of them.
    corrected = list(submitted)[:MISLABELLED]
    for photo_id in corrected:
        (decision,) = admin.review([photo_id], ReviewAction.APPROVE, submitted[photo_id])
        assert decision.new_label == submitted[photo_id] != decision.old_label
    admin.review([i for i in submitted if i not in corrected], ReviewAction.APPROVE)
    assert admin.pending() == []

    with App(stack.settings(), actor="stack-test") as app:
        admin.enqueue_retrain()
        pids = {worker.pid for worker in stack.workers}

        def retraining() -> bool:
            holder = app.lock_holder()
            return holder is not None and holder.pid in pids and open_run(app) is not None

        wait_until(retraining, "a worker retraining under the lock", stack.watched(), 180)
        holder, run_id = app.lock_holder(), open_run(app)
        assert holder is not None and run_id is not None
        victim = next(worker for worker in stack.workers if worker.pid == holder.pid)
        victim.kill()
        victim.process.wait()
        killed_at = time.monotonic()
        assert open_run(app) == run_id, "the retrain finished before the kill"
        say(f"killed {victim.name} (pid {holder.pid}) holding the lock: {holder.describe()}")
        released = wait_until(lambda: app.lock_holder() is None, "the lock released", [], 60)
        survivors = [native for native in stack.watched() if native is not victim]
        wait_until(
            lambda: finished(app, run_id), "the other worker finishing the retrain", survivors, 240
        )
        finished_s = time.monotonic() - killed_at
    say(f"lock released {released:.1f} s after the kill; the run finished {finished_s:.1f} s after")
    return Retrain(submitted, victim, run_id)


def answers_with(stack: Stack, url: str, version: int, photo: bytes, times: int = 10) -> bool:
    """``times`` answers in a row from ``version``, each on a new connection, so that every
    process of the server takes some (each swaps models on its own, within seconds)."""
    for _ in range(times):
        answer = requests.post(
            f"{url}/predict",
            files={"file": ("photo.jpg", photo)},
            headers={"X-API-Key": stack.api_key},
            timeout=30,
        )
        if not answer.ok or answer.json()["model_version"] != version:  # or 503 model_loading
            return False
    return True


def test_the_loop_runs_over_http_through_the_balancer(
    stack: Stack, first_champion: int, retrained: Retrain, dataset_photos: dict[str, list[Path]]
) -> None:
    """Predict, submit, review, retrain: the new champion is served by both edge servers."""
    admin = stack.remote(admin=True)
    versions = {version.version: version.state for version in admin.versions()}
    (candidate,) = set(versions) - {first_champion}
    assert versions == {first_champion: ModelState.ARCHIVED, candidate: ModelState.CHAMPION}
    photo = dataset_photos["grass"][0].read_bytes()
    for url in stack.edge_urls:
        wait_until(
            partial(answers_with, stack, url, candidate, photo),
            f"{url} serving version {candidate} from each of its processes",
            stack.watched(),
            120,
        )
    device = stack.remote()
    photos = [path for paths in dataset_photos.values() for path in paths[-10:]]  # never seen
    predictions = device.classify([path.read_bytes() for path in photos])
    assert all(isinstance(p, Prediction) and p.model_version == candidate for p in predictions)
    right = sum(
        isinstance(prediction, Prediction) and prediction.label == path.parent.name
        for path, prediction in zip(photos, predictions, strict=True)
    )
    say(f"version {candidate} through the balancer: {right} of {len(photos)} unseen photos right")
    assert right >= 0.75 * len(photos)
    audit = [record.action for record in admin.audit_log()]
    assert audit.count("review.approve") == len(retrained.submitted), audit

    # MLflow tracked both trainings (in its PostgreSQL database), their files in the bucket.
    from mlflow import MlflowClient

    tracked = MlflowClient(tracking_uri=stack.mlflow, registry_uri=stack.mlflow)
    name = stack.settings().mlflow_model_name
    assert len(tracked.search_model_versions(f"name='{name}'")) == len(versions)
    bucket = boto3.client(
        "s3",
        endpoint_url=stack.s3,
        aws_access_key_id="stack",
        aws_secret_access_key="stack",
        region_name="us-east-1",
    ).list_objects_v2(Bucket="mlflow-artifacts")
    assert sum(item["Key"].endswith(".pth") for item in bucket["Contents"]) == len(versions)


def test_a_worker_killed_mid_retrain_is_finished_by_the_other(
    stack: Stack, retrained: Retrain, dataset_photos: dict[str, list[Path]]
) -> None:
    """One run, closed with one candidate; every photo once, none lost; the doctor agrees."""
    with App(stack.settings(), actor="stack-test") as app:
        with app.registry.session() as session:
            runs = list(session.scalars(select(RetrainRun)))
            photos = sorted(
                (row.sha256, str(row.status), row.label) for row in session.scalars(select(Photo))
            )
        assert [run.id for run in runs] == [retrained.run_id], "another retrain ran"
        (run,) = runs
        assert run.finished_at is not None and run.promoted, run.reason
        assert run.photos_moved == len(retrained.submitted)
        every = labelled(dataset_photos, slice(0, BASE_PER_LABEL + SUBMITTED_PER_LABEL))
        assert photos == sorted(  # each once, with its true label, trained on
            (app.check_photo(path.read_bytes()).sha256, "trained", label) for path, label in every
        )
        assert app.lock_holder() is None
    doctor = stack.classifi("doctor")
    assert doctor.returncode == 0 and "Consistent." in doctor.stdout, doctor.stdout + doctor.stderr
    assert not retrained.victim.running()
    (survivor,) = [worker for worker in stack.workers if worker is not retrained.victim]
    assert f"resuming retrain run {retrained.run_id}," in survivor.log.read_text()


def predict_count(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "classifi_http_requests_total" and sample.labels["route"] == "/predict"
    )


Request = tuple[float, float, int | str]  # started, ended (monotonic), status or error


def refused(url: str) -> bool:
    """True once nothing accepts connections at ``url`` any more (its processes are gone)."""
    address = urlsplit(url)
    with socket.socket() as sock:
        return sock.connect_ex((address.hostname, address.port)) == errno.ECONNREFUSED


def test_an_edge_server_killed_under_load_fails_only_requests_in_flight(
    stack: Stack, first_champion: int, dataset_photos: dict[str, list[Path]]
) -> None:
    photos = [path.read_bytes() for paths in dataset_photos.values() for path in paths[:32]]
    (champion,) = [
        v.version for v in stack.remote(admin=True).versions() if v.state == ModelState.CHAMPION
    ]
    for url in stack.edge_urls:  # every process has loaded it: no 503 model_loading below
        wait_until(
            partial(answers_with, stack, url, champion, photos[0]),
            f"{url} serving version {champion} from each of its processes",
            stack.watched(),
            120,
        )
    stop = threading.Event()

    def client(index: int) -> list[Request]:
        session, done = requests.Session(), list[Request]()
        while not stop.is_set() and len(done) < 5000:
            started = time.monotonic()
            try:
                outcome: int | str = session.post(
                    f"{stack.api}/predict",
                    files={"file": ("photo.jpg", photos[(index + len(done) * CLIENTS) % 64])},
                    headers={"X-API-Key": stack.api_key},
                    timeout=60,
                ).status_code
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            done.append((started, time.monotonic(), outcome))
        return done

    victim, victim_url = stack.edges[-1], stack.edge_urls[-1]
    survivors = [native for native in stack.watched() if native is not victim]
    wait_until(  # or the load goes to one of them only
        lambda: all(set(balancer_states(stack, e.name).values()) == {"UP"} for e in stack.edges),
        "the balancer counting both edge servers up in both backends",
        stack.watched(),
        60,
    )
    victim_served = predict_count(victim_url)
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        futures = [pool.submit(client, index) for index in range(CLIENTS)]
        try:
            time.sleep(3)
            assert predict_count(victim_url) > victim_served, f"the load missed {victim.name}"
            killed_at = time.monotonic()
            victim.kill()
            # SIGKILL is not instant: the kernel tears the processes down, their sockets last.
            wait_until(lambda: refused(victim_url), "its port closed", survivors, 30, 0.002)
            # Read the clock here, not in wait_until: the clients' threads can hold the GIL for
            # milliseconds between the kill and its first probe, so its count starts late.
            closed_at = time.monotonic()
            wait_until(
                lambda: set(balancer_states(stack, victim.name).values()) == {"DOWN"},
                "the balancer marking the dead edge server down in both backends",
                survivors,
                30,
            )
            down = time.monotonic() - killed_at
            time.sleep(5)  # and the clients go on
        finally:  # or the clients go on to their 5000th request before a failure is told
            stop.set()
        done = [request for future in futures for request in future.result()]
    victim.process.wait()

    failed = [request for request in done if request[2] != 200]
    in_flight = [r for r in done if r[0] < closed_at and r[1] > killed_at]
    after = [request for request in done if request[0] > closed_at]
    say(
        f"edge server killed under {CLIENTS} clients: {len(done)} requests, {len(in_flight)} "
        f"in flight during the kill (its port closed {closed_at - killed_at:.3f} s after SIGKILL), "
        f"{len(failed)} failed {sorted({str(r[2]) for r in failed})}; the last failure ended "
        f"{max((r[1] - killed_at for r in failed), default=0):.2f} s after the kill; the "
        f"balancer marked it down {down:.1f} s after it; the slowest later request took "
        f"{max(r[1] - r[0] for r in after):.2f} s"
    )
    assert len(failed) <= CLIENTS
    assert set(failed) <= set(in_flight), failed
    assert after and all(request[2] == 200 for request in after)


def balancer_states(stack: Stack, server: str) -> dict[str, str]:
    """``server``'s state ("UP", "DOWN", "UP 1/2"...) in each backend, from the balancer."""
    table = requests.get(stack.balancer_stats, timeout=5).text.removeprefix("# ")
    rows = [row for row in csv.DictReader(io.StringIO(table)) if row["svname"] == server]
    assert len(rows) == 2, rows  # in the ready and the live backend
    return {row["pxname"]: row["status"] for row in rows}


def check_deploy() -> ModuleType:
    """scripts/check_deploy.py, whose parsers of the dashboards and rules are the ones CI uses."""
    spec = importlib.util.spec_from_file_location("check_deploy", REPO / "scripts/check_deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def alert_signals(alerts: set[str]) -> dict[str, str]:
    """Each alert's signal as docs/deployment.md lists it: its expression without threshold."""
    docs = (REPO / "docs" / "deployment.md").read_text()
    signals = dict(
        re.findall(r"^- `(\w+)`[^\n]*\n\n\s*```promql\n[^`]*?# signal: ([^\n]+)\n", docs, re.M)
    )
    assert set(signals) == alerts, "docs/deployment.md lists a signal for each alert rule"
    return signals


def unsure_prediction(device: RemoteApp, dandelion: Path, grass: Path, below: float) -> Prediction:
    """A real photo the model is unsure of: a dandelion faded into grass, the mix bisected
    towards where the two labels meet (the answer's confidence falls to 0.5 there)."""
    first, last = (
        Image.open(path).convert("RGB").resize((256, 256)) for path in (dandelion, grass)
    )
    low, high = 0.0, 1.0
    for _ in range(20):
        mix = (low + high) / 2
        data = io.BytesIO()
        Image.blend(first, last, mix).save(data, "JPEG", quality=92)
        (prediction,) = device.classify([data.getvalue()])
        assert isinstance(prediction, Prediction), prediction
        if prediction.confidence < below:
            return prediction
        low, high = (mix, high) if prediction.label == "dandelion" else (low, mix)
    pytest.fail(f"no mix of {dandelion.name} and {grass.name} was below {below} confidence")


def series(prometheus: str, query: str) -> list[dict[str, object]]:
    answer = requests.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=30)
    assert answer.ok, f"{query}: {answer.text}"
    result: list[dict[str, object]] = answer.json()["data"]["result"]
    return result


def test_prometheus_answers_every_query_of_the_dashboards_and_rules(
    stack: Stack, retrained: Retrain, dataset_photos: dict[str, list[Path]]
) -> None:
    promtool = debian_binary("promtool", "prometheus")
    prometheus = REPO / "packaging" / "prometheus"
    for command in (
        ["check", "config", str(stack.folder / "prometheus.yml")],
        ["check", "config", str(prometheus / "prometheus.yml")],
        ["check", "rules", str(prometheus / "alerts.yml")],
    ):
        checked = subprocess.run([promtool, *command], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    # The events that some series need, caused for real through the balancer.
    device = stack.remote()
    unsure = unsure_prediction(
        device,
        dataset_photos["dandelion"][0],
        dataset_photos["grass"][0],
        stack.settings().unsure_below,
    )
    say(f"an unsure prediction: {unsure.label} at {unsure.confidence:.2f}")
    device.record_usage("desktop", "session")  # the desktop's remote mode reports its use
    assert requests.get(f"{stack.api}/", timeout=30).ok  # a view of the phone page

    deploy = check_deploy()
    queries = []
    for expression in (e for exprs in deploy.dashboard_expressions().values() for e in exprs):
        for variable, duration in deploy.GRAFANA_VARIABLES.items():
            expression = expression.replace(variable, duration)
        queries.append(expression)
    queries += alert_signals(set(deploy.alert_expressions())).values()
    # The 5xx of the ratio are there (the 503s before the first model), not only `or vector(0)`.
    queries.append('classifi_http_requests_total{status=~"5..", route!~"/metrics|/health/.+"}')

    def unanswered() -> list[str]:
        rules = requests.get(f"{stack.prometheus}/api/v1/rules", timeout=30).json()["data"]
        evaluated = {
            rule["name"]: rule["health"] for group in rules["groups"] for rule in group["rules"]
        }
        assert set(evaluated) == set(deploy.alert_expressions()), evaluated
        broken = [f"rule {name}: {health}" for name, health in evaluated.items() if health != "ok"]
        return broken + [query for query in queries if not series(stack.prometheus, query)]

    started = time.monotonic()
    while empty := unanswered():
        if time.monotonic() - started > 120:  # scrapes every 2 s: a missing series stays so
            pytest.fail("No series (or a rule that fails) for:\n" + "\n".join(empty))
        time.sleep(1)
    say(
        f"{len(queries)} queries each answered with a series, {time.monotonic() - started:.1f} s on"
    )
