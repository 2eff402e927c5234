"""Every error the application core raises for a caller to show (front ends map them to 4xx or a clean message)."""

from router.artifact import ArtifactError
from router.dataset import DataError
from router.db import SchemaError
from router.departments import LabelError
from router.engine import StrategyError
from router.modelio import ModelLoadError
from router.service import InputError
from router.store import Conflict, InvalidInput, NotFound, StoreError
from tuning.jobs.store import ParameterError

__all__ = ["ArtifactError", "Conflict", "DataError", "InputError", "InvalidInput", "LabelError", "ModelLoadError",
           "NotFound", "ParameterError", "SchemaError", "StoreError", "StrategyError"]
