"""Unify WPI: the protocol in three pure layers, and the device path built around them.

Pure, no HTTP and no database, each layer importing only the one below: ``xml`` (bytes
and trees), ``messages`` (typed messages), ``engine`` (the session rules, with
``session``, ``snapshot``, ``effects``, ``items`` and ``reports``). The engine never
sees an lxml element.

Around them: ``handler`` (the HTTP endpoints) calls ``exchange`` (one message: trust,
self-setup, snapshot, decision, persistence), which reads the engine's snapshot with
``snapshot_builder`` and turns the decision into record changes with ``persist``; they
use ``store`` (rows in and out), ``profile`` (settings to items), ``secure`` (the
bootstrap), ``selfsetup`` (deployment PINs) and ``identity``; ``dispatch`` runs
contact-me (``contact``) and housekeeping in the background; ``limits`` and ``runtime``
hold the per-process bounds (``dls.quiet`` logs each repeated problem once).
"""
