"""Import a template's Python callable by its dotted path, with errors that say what is missing.

Shared by the transform and report steps (at run time) and by ``validate``'s import check, which calls it in
a subprocess so that no customer-facing code runs in the CLI process and nothing is imported at parse time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from b2b_integrations.errors import FatalStepError


def import_callable(dotted_path: str) -> Callable[..., Any]:
    """Import ``package.module.function`` (or ``package.module:function``) with a clear error."""
    module_name, sep, attr = dotted_path.replace(":", ".").rpartition(".")
    if not sep or not module_name:
        raise FatalStepError(f"callable {dotted_path!r} must be a dotted path 'package.module.function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise FatalStepError(f"cannot import module {module_name!r} of callable {dotted_path!r}: {e}") from e
    func = getattr(module, attr, None)
    if not callable(func):
        raise FatalStepError(f"{module_name!r} has no callable named {attr!r}")
    return func
