"""The callable that stands for a remote function in ``load_function_set``'s result."""

from __future__ import annotations

from typing import Any, Protocol


class Caller(Protocol):
    """What a proxy needs from the host (``FunctionHost`` is one)."""

    def call(self, name: str, arguments: Any = None, timeout: float | None = None) -> Any:
        """``FunctionHost.call``."""
        ...

    async def acall(self, name: str, arguments: Any = None, timeout: float | None = None) -> Any:
        """``FunctionHost.acall``."""
        ...


class FunctionProxy:
    """Calls ``set.function`` in its worker: ``proxy(a=1, b=2)``.

    Positional arguments are matched to the parameters in schema order.
    Raises the same ``CallError`` subclasses as ``FunctionHost.call``.
    """

    def __init__(self, host: Caller, set_name: str, function: str, schema: dict) -> None:
        self._host = host
        self.set_name = set_name
        self.function = function
        self.json_schema = schema
        self.__name__ = function
        self.__qualname__ = f"{set_name}.{function}"
        self.__doc__ = schema.get("description") or None

    def _arguments(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        if not args:
            return kwargs
        names = list(self.json_schema["parameters"].get("properties", {}))
        if len(args) > len(names):
            raise TypeError(
                f"{self.__qualname__}() takes at most {len(names)} positional arguments"
            )
        bound = dict(zip(names, args, strict=False))
        for key in kwargs:
            if key in bound:
                raise TypeError(f"{self.__qualname__}() got multiple values for {key!r}")
        bound.update(kwargs)
        return bound

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._host.call(self.__qualname__, self._arguments(args, kwargs))

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        return await self._host.acall(self.__qualname__, self._arguments(args, kwargs))

    def __repr__(self) -> str:
        return f"<remote function {self.__qualname__}>"
