"""The assembly layer: what turns a config (or Python objects) into a trained, evaluated,
exported and reported run.

- :mod:`~torchlab.engine.experiment`: the typed, frozen :class:`Experiment` (config, data
  bundle, task, model, loaders' settings, device, world) built from a config.
- :mod:`~torchlab.engine.supervised`: the ``supervised`` run kind (``RUN_KINDS``), with
  :mod:`~torchlab.engine.fit` (train, resume, the end-of-fit files) and
  :mod:`~torchlab.engine.export` (export a run to a verified artefact).
- :mod:`~torchlab.engine.predict`: predictions of a run or export folder on users' inputs.
- :mod:`~torchlab.engine.forecasting`: forecasts beyond the data, rolling-origin backtests.
- :mod:`~torchlab.engine.cv`: cross-validation and repeated seeds in one parent folder.
- :mod:`~torchlab.engine.calibration`: temperature scaling and conformal intervals fitted
  at the end of fit, and applied wherever a run predicts.
- :mod:`~torchlab.engine.explain`: attributions of a run's predictions (``torchlab explain``).
- :mod:`~torchlab.engine.verbs`: the verbs :mod:`torchlab.api` offers, each handed to the
  run's kind (:mod:`torchlab.kinds`).

The layers below (config, data, models, tasks, training, run, exporters, report) never
import this package; the facades above it (api, sklearn, tune, serve, cli) do. See
docs/architecture.md.
"""
