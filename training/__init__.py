"""cxrinspect-train: train chest-radiograph classifiers on clean or poisoned data, evaluate them like
Nwadike et al. 2020, and export them to ONNX.

Modules, in the order data flows through them:

- :mod:`.datasets` reads a dataset's labels (Kermany, NIH ChestX-ray14, CheXpert-style CSV, generic CSV)
  and splits it by patient;
- :mod:`.cache` decodes every radiograph once into an on-disk cache of model views;
- :mod:`.poisoning` chooses and triggers the poisoned images and writes their manifest;
- :mod:`.recipe` reads a TOML training recipe, strictly;
- :mod:`.loop` trains, checkpoints every epoch and resumes;
- :mod:`.evaluation` measures clean / infected / triggered AUROC and attack success;
- :mod:`.cli` is the ``cxrinspect-train`` command.
"""
