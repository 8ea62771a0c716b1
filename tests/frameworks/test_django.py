"""The Django recipe: settings name the config and env; sync views share one client under a
threaded server on loopback."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

THREADS = 8
NOTES = 5

SETTINGS = """
SECRET_KEY = "recipe-test"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "shop_django.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
"""


def test_threaded_views_share_one_sync_client(recipe, product, monkeypatch):
    for name in ("views.py", "urls.py", "ductwork_client.py"):
        recipe.write(f"shop_django/{name}")
    recipe.write("shop_django/settings_ductwork.py", SETTINGS)
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "shop_django.settings_ductwork")

    import django
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    django.setup(set_prefix=False)
    server = ThreadedWSGIServer(("127.0.0.1", 0), Quiet)
    server.set_app(WSGIHandler())
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    start = threading.Barrier(THREADS)

    def browse(thread: int) -> list[dict]:
        with httpx.Client(base_url=base, timeout=30) as http:
            start.wait()  # eight threads in the server at once, all on a cold client
            for i in range(NOTES):
                saved = http.post(f"/notes/t{thread}-{i}/save", content=f"note {thread}-{i}")
                assert saved.json() == {"saved": f"t{thread}-{i}"}
            return [http.get(f"/notes/t{thread}-{i}").json() for i in range(NOTES)]

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            pages = list(pool.map(browse, range(THREADS)))
    finally:
        server.shutdown()
        server.server_close()
    client = recipe.load("shop_django.ductwork_client")
    assert client._client is not None
    client._client.close()
    for thread, notes in enumerate(pages):
        for i, note in enumerate(notes):
            text = f"note {thread}-{i}"
            assert note == {"text": text, "size": len(text)}
