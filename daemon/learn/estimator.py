"""The scikit-learn conventions the profile's learners follow, without importing scikit-learn.

Hyperparameters are the keyword arguments of ``__init__``, stored as given under the same name;
learned state lives in attributes ending in ``_``; incremental learners have ``partial_fit``.
``get_params``/``set_params`` work as in scikit-learn, ``component__name`` reaching a nested
learner, so a benchmark sets a hyperparameter by name instead of changing a module global.
"""
from __future__ import annotations

import inspect
from typing import Any, TypeVar

E = TypeVar("E", bound="Params")


class Params:
    """``get_params``/``set_params`` over the keyword arguments of ``__init__``."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters by name; with ``deep``, those of nested learners as ``name__param`` too."""
        out: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name)
            out[name] = value
            if deep and isinstance(value, Params):
                out.update({f"{name}__{k}": v for k, v in value.get_params(deep=True).items()})
        return out

    def set_params(self: E, **params: Any) -> E:
        """Set hyperparameters by name (``name__param`` for a nested learner); an unknown name is an error
        that names the valid ones. Learned state is kept: the next update uses the new values."""
        valid = self._param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"{type(self).__name__} has no hyperparameter {name!r} (valid: {', '.join(valid)})")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            child = getattr(self, name)
            if not isinstance(child, Params):
                raise ValueError(f"{type(self).__name__}.{name} is not a learner with hyperparameters of its own")
            child.set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({args})"
