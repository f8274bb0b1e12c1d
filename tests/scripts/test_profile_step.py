"""scripts/profile_step.py summarises an accelerator trace by kind of kernel."""

import gzip
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _trace(path):
  """Two steps of a GPU trace: overlapping convolutions, a cuDNN split-K reduction that
  belongs to a weight gradient, a concatenation launched from a CUDA graph, and host
  events that are dispatch, not work."""
  meta = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
          {"ph": "M", "name": "process_name", "pid": 7, "args": {"name": "/host:CPU"}}]
  kernels = []
  for step in range(2):
    t = 1000.0 * step
    kernels += [
        ("sm90_xmma_fprop_implicit_gemm_bf16", "cudnn-conv.1", t, 100.0),
        ("sm90_xmma_fprop_implicit_gemm_bf16", "cudnn-conv.2", t + 50, 100.0),  # overlaps
        ("splitKreduce_kernel", "cudnn-conv-bw-filter.3", t + 200, 40.0),
        ("input_concatenate_fusion_11", "command_buffer_8", t + 300, 20.0),
        ("input_add_reduce_fusion_5", "input_add_reduce_fusion.5", t + 400, 10.0)]
  events = meta + [{"ph": "X", "pid": 1, "tid": 14, "ts": ts, "dur": dur, "name": name,
                    "args": {"hlo_op": op}} for name, op, ts, dur in kernels]
  events.append({"ph": "X", "pid": 7, "tid": 1, "ts": 0.0, "dur": 5000.0,
                 "name": "PjRtCApiLoadedExecutable::Execute"})
  with gzip.open(path, "wt") as f:
    json.dump({"traceEvents": events}, f)


def test_gpu_trace_summary_by_kind_of_kernel(tmp_path):
  path = tmp_path / "perfetto_trace.json.gz"
  _trace(path)
  out = subprocess.run([sys.executable, "scripts/profile_step.py", "--summarise_trace",
                        str(path), "--steps", "2", "--step_ms", "0.5"], cwd=REPO,
                       capture_output=True, text=True, check=True).stdout
  # Busy: the union of kernel intervals, 150 + 40 + 20 + 10 us per step (not 220 + ...).
  assert "accelerator busy 0.22 ms per step of 0.50 ms wall (5 kernels per step)" in out
  rows = {line.rsplit(None, 3)[0].strip(): float(line.rsplit(None, 3)[1])
          for line in out.splitlines() if line.endswith("%")}
  assert rows == {"conv forward": 0.2, "conv weight grad": 0.04, "concatenate": 0.02,
                  "reduce fusion": 0.01}
  assert "PjRt" not in out
