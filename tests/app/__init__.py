"""The app's tests. A package, so that this folder's conftest.py does not take the module name
`conftest` from tests/conftest.py (whose helpers the engine tests import by that name)."""
