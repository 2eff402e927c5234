"""The headless application core the CLI, the API and the console share (see core.Application).

Layers (enforced by the import contracts in pyproject.toml, checked in the test suite): front ends
(router.api, router.cli, tui) -> this package -> tuning -> rag -> the store -> the routing core.
"""

from router.application.core import Application
from router.application.registry import ModelRegistry
from router.application.retraining import ParameterError, Retraining, TrainingPreview
from router.application.scheduler import RequestScheduler
from router.service import InputError, RouterService, validate_text
from router.store import MAX_PAGE
from tuning.jobs.records import TuningJobPublic

__all__ = ["MAX_PAGE", "Application", "ModelRegistry", "ParameterError", "RequestScheduler", "Retraining", "RouterService", "InputError", "validate_text", "TrainingPreview", "TuningJobPublic"]
