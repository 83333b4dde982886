"""The multi-stage serving pipeline: retrievers -> features -> ranker -> rules.

Each stage is a named component with a pydantic config; the default pipeline is described in
``default_pipeline.toml`` shipped with the package.
"""
