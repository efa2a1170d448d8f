import pytest

# The rig's helpers assert too: show their diffs like the tests' own.
pytest.register_assert_rewrite("tests.security.rig")
