"""The built zwc package, once per test session (building it takes well under a second, but every test
folder that imports it in-process must see the same one)."""
import pytest

from jaxsuite.sebench.docs import package_docs, rewrite_docs
from jaxsuite.sebench.names import numpy_mapping
from jaxsuite.sebench.package import build_package


@pytest.fixture(scope="session")
def mapping():
    return numpy_mapping()


@pytest.fixture(scope="session")
def zwc_dir(tmp_path_factory, mapping):
    """The package folder (…/pkg/zwc), with the rewritten docs as its help texts."""
    return build_package(tmp_path_factory.mktemp("pkg"), mapping, docs=package_docs(rewrite_docs(mapping), mapping))


@pytest.fixture(scope="session")
def zwc(zwc_dir, mapping):
    from jaxsuite.sebench.tasks import load_package
    return load_package(zwc_dir, mapping.package)
