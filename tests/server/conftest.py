"""Server-test fixtures: a server shared per module, and a check that no server logged a 500."""
import pytest

from tests.fixtures.server import Marketplace


@pytest.fixture
def marketplace_factory(marketplace_factory):
    """The plugin's factory, plus: every server it started logged no internal error."""
    started = []

    def factory(**options):
        server = marketplace_factory(**options)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.assert_no_server_errors()


@pytest.fixture(scope="module")
def shared_marketplace(tmp_path_factory):
    """One server for a whole module, for the many bad-input and read-mostly tests."""
    server = Marketplace(tmp_path_factory.mktemp("shared-marketplace")).start()
    yield server
    server.stop()
    server.assert_no_server_errors()


@pytest.fixture(scope="module")
def shared_device(shared_marketplace):
    """A registered, online device on the shared server (never rented by the tests using it)."""
    return shared_marketplace.online_device("pi-shared")
