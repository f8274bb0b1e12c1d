"""Reading a run's own TensorBoard scalars back (the doctor's look at a finished run, and
the curves of docs/quality.md)."""

import glob
import os

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util


def read_scalars(workdir: str, tags=None) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} of the scalars in `workdir`'s own event files (not its
  sub-folders'); the last value wins where a resumed run wrote a step twice."""
  out: dict[str, dict[int, float]] = {}
  for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))):
    acc = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0,
                                                                  "scalars": 0})
    acc.Reload()
    for tag in acc.Tags()["tensors"]:
      if tags is None or tag in tags:
        for event in acc.Tensors(tag):
          value = tensor_util.make_ndarray(event.tensor_proto)
          if value.size == 1:
            out.setdefault(tag, {})[event.step] = float(value)
  return out
