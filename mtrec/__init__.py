"""mtrec: data model, dataset loaders, the multi-task model, training and evaluation.

This package never imports ``retrieval`` or ``agent``: it exchanges item ids and arrays with them.
"""

from __future__ import annotations

__version__ = "0.1.0"
