"Fixtures shared by the test files."
import http.server, threading
import pytest
import torch


@pytest.fixture(scope='module')
def one_thread():
    "Run a module's tests on one torch thread, then restore the count: their tensors are tiny, and on a busy CPU two threads spin-wait on each other."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def serve_dir():
    "Serve folders over HTTP on the loopback interface: `url = serve_dir(folder, truncate=False)`; the servers stop after the test."
    servers = []
    def start(folder, truncate=False):
        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **k): super().__init__(*a, directory=str(folder), **k)
            def log_message(self, *a): pass
            def copyfile(self, src, dst):
                if not truncate: return super().copyfile(src, dst)
                data = src.read()
                dst.write(data[:len(data) // 2])   # the header promised every byte: a connection cut halfway
        httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f'http://127.0.0.1:{httpd.server_address[1]}/'
    yield start
    for s in servers: s.shutdown(); s.server_close()
