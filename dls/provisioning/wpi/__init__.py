"""Unify WPI in three layers: ``xml`` (bytes and trees), ``messages`` (typed messages), ``engine``.

Each layer imports only the one below it; the engine never sees an lxml element, and
nothing here touches HTTP or the database.
"""
