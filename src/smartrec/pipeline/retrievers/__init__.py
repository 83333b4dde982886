"""Retrievers as components: one module per kind, found by name through the registry.

Importing a module of this package registers the kind it defines; :func:`retriever_class`
imports them all first, so a new kind is one new module here (and a TOML block).
"""

from smartrec.pipeline.retrievers.base import (
    PipelineParts,
    Retriever,
    kinds,
    register,
    retriever_class,
)

__all__ = ["PipelineParts", "Retriever", "kinds", "register", "retriever_class"]
