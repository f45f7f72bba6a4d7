"""A real ``classifi serve`` (gunicorn, 2 workers) on 127.0.0.1: the seed's curl command,
32 concurrent clients, exact metrics across workers, and a champion swap under load; and a
plain ``gunicorn "edge_server.wsgi:create_app()"`` that serves the same way."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector

from tests.edge.conftest import LiveServer, copy_home, start_gunicorn, start_server
from tests.homes import photo_name
from tests.services import unavailable

pytestmark = pytest.mark.slow

SEED_CURL = """curl -X POST http://localhost:8000/predict \\
  -H "accept: application/json" \\
  -H "Content-Type: multipart/form-data" \\
  -F "file=@/path/to/your/image.jpg"
"""
DESIGN_CURL = 'curl -X POST http://localhost:8000/predict -F "file=@photo.jpg"'


def all_photos(dataset_photos: dict[str, list[Path]]) -> list[Path]:
    return [path for paths in dataset_photos.values() for path in paths]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if labels else ''} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def default_server(
    tmp_path_factory: pytest.TempPathFactory, edge_home: Path
) -> Iterator[LiveServer]:
    """``classifi serve --workers 2`` on a free port of 127.0.0.1."""
    home = copy_home(edge_home, tmp_path_factory.mktemp("default") / "home")
    server = start_server(home, "--workers", "2")
    yield server
    server.stop()


def on_port_of(server: LiveServer, command: str) -> str:
    """The seed's command, verbatim but for the port: the test's server listens on its own."""
    assert "http://localhost:8000/" in command
    return command.replace("http://localhost:8000/", f"http://localhost:{port_of(server)}/")


def port_of(server: LiveServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def plain_gunicorn(
    tmp_path_factory: pytest.TempPathFactory, edge_home: Path
) -> Iterator[LiveServer]:
    """``gunicorn "edge_server.wsgi:create_app()"`` with 2 workers, settings from CLASSIFI_*."""
    home = copy_home(edge_home, tmp_path_factory.mktemp("gunicorn") / "home")
    tmp = home.parent / "tmp"
    tmp.mkdir()
    server = start_gunicorn(
        home,
        "--workers",
        "2",
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        env={"TMPDIR": str(tmp)},
    )
    yield server
    server.stop()


def test_seed_curl_commands_verbatim(
    default_server: LiveServer, dataset_photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    if shutil.which("curl") is None:
        unavailable("the curl binary is not installed")
    image = dataset_photos["dandelion"][0]
    command = on_port_of(default_server, SEED_CURL).replace("/path/to/your/image.jpg", str(image))
    answer = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
    assert '"prediction":"dandelion"' in answer.stdout.replace(" ", "")

    shutil.copy(dataset_photos["grass"][0], tmp_path / "photo.jpg")  # a temp copy, not the repo
    answer = subprocess.run(
        ["bash", "-c", on_port_of(default_server, DESIGN_CURL)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"prediction":"grass"' in answer.stdout.replace(" ", "")


def test_32_concurrent_clients_all_get_correct_answers(
    live_server: LiveServer,
    dataset_photos: dict[str, list[Path]],
    expected_labels: dict[int, dict[str, str]],
) -> None:
    photos = all_photos(dataset_photos)
    stop = threading.Event()

    def client(index: int) -> list[tuple[str, int, dict[str, object]]]:
        session, answers = requests.Session(), []
        position = index
        while not stop.is_set() or len(answers) < 3:
            path = photos[position % len(photos)]
            response = session.post(
                f"{live_server.url}/predict", files={"file": (path.name, path.read_bytes())}
            )
            answers.append((photo_name(path), response.status_code, response.json()))
            position += 32
        return answers

    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = [pool.submit(client, index) for index in range(32)]
        time.sleep(4)  # the load lasts a few seconds; nothing is asserted about time
        stop.set()
        answers = [answer for future in futures for answer in future.result()]
    assert len(answers) >= 96
    for name, status, body in answers:
        assert status == 200, body
        assert body["prediction"] == expected_labels[1][name], name


@pytest.mark.parametrize("started_by", ["classifi serve", "plain gunicorn"])
def test_metrics_are_exact_across_two_workers(
    started_by: str, request: pytest.FixtureRequest, dataset_photos: dict[str, list[Path]]
) -> None:
    fixture = {"classifi serve": "live_server", "plain gunicorn": "plain_gunicorn"}[started_by]
    live_server: LiveServer = request.getfixturevalue(fixture)

    def scrape() -> str:
        return requests.get(f"{live_server.url}/metrics", timeout=30).text

    photos = all_photos(dataset_photos)[:60]
    before, before_by_worker = scrape(), predictions_by_worker(live_server)

    def send(path: Path) -> int:
        response = requests.post(
            f"{live_server.url}/predict", files={"file": (path.name, path.read_bytes())}
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        assert set(pool.map(send, photos)) == {200}
    after, after_by_worker = scrape(), predictions_by_worker(live_server)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    n = len(photos)
    assert delta("classifi_http_requests_total", method="POST", route="/predict", status="200") == n
    assert delta("api_requests_total", method="POST", endpoint="/predict") == n
    by_label = sum(
        delta("classifi_predictions_total", label=label) for label in ("dandelion", "grass")
    )
    assert by_label == n
    assert delta("classifi_prediction_confidence_count") == n
    assert delta("classifi_batch_size_sum") == n  # every photo went through one batch
    assert (
        delta("classifi_http_request_duration_seconds_count", method="POST", route="/predict") == n
    )
    assert metric(after, "classifi_model_info", backbone="efficientnet_lite0", version="1") == 1

    # These requests reached both workers: each counted some in its own file, and the files'
    # counts add up to the merged figure above.
    served = {
        worker: count - before_by_worker.get(worker, 0.0)
        for worker, count in after_by_worker.items()
    }
    assert len([count for count in served.values() if count > 0]) == 2, served
    assert sum(served.values()) == n


def predictions_by_worker(live_server: LiveServer) -> dict[str, float]:
    """The 200s of ``POST /predict`` in each worker's own counter file (one per process), in
    the directory named after their master."""
    shared = live_server.home.parent / "tmp" / f"classifi-metrics-{live_server.process.pid}"
    wanted = {"method": "POST", "route": "/predict", "status": "200"}
    counts = {}
    for path in shared.glob("counter_*.db"):
        for family in MultiProcessCollector.merge([str(path)], accumulate=True):
            for sample in family.samples:
                if sample.name == "classifi_http_requests_total" and sample.labels == wanted:
                    counts[path.name] = sample.value
    return counts


def test_a_plain_gunicorn_serves_predict_and_makes_the_admin_token(
    plain_gunicorn: LiveServer, dataset_photos: dict[str, list[Path]]
) -> None:
    path = dataset_photos["dandelion"][0]
    answer = requests.post(
        f"{plain_gunicorn.url}/predict", files={"file": (path.name, path.read_bytes())}
    )
    assert answer.status_code == 200 and answer.json()["prediction"] == "dandelion"
    admin = {"Authorization": f"Bearer {plain_gunicorn.token}"}  # printed once at start
    assert requests.get(f"{plain_gunicorn.url}/models", headers=admin).status_code == 200
    assert requests.get(f"{plain_gunicorn.url}/models").status_code == 401


def test_champion_swap_under_load_fails_no_request(
    default_server: LiveServer,
    dataset_photos: dict[str, list[Path]],
    expected_labels: dict[int, dict[str, str]],
) -> None:
    photos = all_photos(dataset_photos)
    url = default_server.url
    promoted = threading.Event()
    loaded = threading.Barrier(17)  # the 16 clients, once each has an answer, and this test
    swapped_answers = threading.Semaphore(0)
    stop = threading.Event()

    def client(index: int) -> list[tuple[str, int, dict[str, object]]]:
        session, answers = requests.Session(), []
        position = index
        while not stop.is_set():
            path = photos[position % len(photos)]
            response = session.post(
                f"{url}/predict", files={"file": (path.name, path.read_bytes())}
            )
            answers.append((photo_name(path), response.status_code, response.json()))
            if len(answers) == 1:
                loaded.wait(timeout=120)
            if promoted.is_set() and response.json().get("model_version") == 2:
                swapped_answers.release()
            position += 16
        return answers

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(client, index) for index in range(16)]
        loaded.wait(timeout=120)  # every client is sending: the load is on
        response = requests.post(
            f"{url}/admin/models/2/promote",
            headers={"Authorization": f"Bearer {default_server.token}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        promoted.set()
        # Keep the load on until the new champion has answered plenty of requests.
        for _ in range(200):
            assert swapped_answers.acquire(timeout=120)
        stop.set()
        answers = [answer for future in futures for answer in future.result()]

    assert {status for _, status, _ in answers} == {200}
    versions = [body["model_version"] for _, _, body in answers]
    assert versions.count(1) > 0 and versions.count(2) >= 200
    for name, _, body in answers:
        assert body["prediction"] == expected_labels[int(body["model_version"])][name]
    # Soon every worker serves the new champion: 20 answers in a row from version 2.
    in_a_row, deadline = 0, time.monotonic() + 120
    while in_a_row < 20 and time.monotonic() < deadline:
        path = photos[in_a_row]
        answer = requests.post(f"{url}/predict", files={"file": (path.name, path.read_bytes())})
        in_a_row = in_a_row + 1 if answer.json()["model_version"] == 2 else 0
    assert in_a_row == 20


def test_two_workers_start_together_on_a_fresh_home(tmp_path: Path) -> None:
    """They open the new registry one at a time (one runs the migrations, one makes the
    token): a worker that failed to boot would stop the whole server."""
    server = start_gunicorn(
        tmp_path / "home", "--workers", "2", env={"TMPDIR": str(tmp_path)}, wait_for="/health/live"
    )
    try:
        deadline = time.monotonic() + 120
        while server.log.read_text().count("No model yet") < 2:  # each worker built its app
            assert server.process.poll() is None, server.log.read_text()
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.2)
        admin = {"Authorization": f"Bearer {server.token}"}
        assert requests.get(f"{server.url}/models", headers=admin).json() == {"models": []}
        ready = requests.get(f"{server.url}/health/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["model"].startswith("No model")
        assert server.process.poll() is None and "Traceback" not in server.log.read_text()
    finally:
        server.stop()
