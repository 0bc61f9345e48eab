"Fixtures shared by the test files."
import pytest
import torch


@pytest.fixture(scope='module')
def one_thread():
    "Run a module's tests on one torch thread, then restore the count: their tensors are tiny, and on a busy CPU two threads spin-wait on each other."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
