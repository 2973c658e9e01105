"""Where the repository and the test fixtures are, for test modules at any depth under ``tests/``."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
