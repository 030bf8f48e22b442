"Shared pytest set-up: the `slow` marker (run by `make test-all`, skipped by `make test`)."


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds; run by `make test-all`, not `make test`")
